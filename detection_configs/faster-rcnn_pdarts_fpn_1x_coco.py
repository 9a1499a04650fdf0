# Faster R-CNN + FPN on COCO 2017, 1x schedule (12 epochs, SGD lr 0.02 for 16 images per batch), with
# the searched ImageNet network (backbones/mmdet_pdarts.py, registered as PDARTSNet) as the backbone.
# Run from the repository root: mim train mmdet detection_configs/faster-rcnn_pdarts_fpn_1x_coco.py
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['backbones.mmdet_pdarts'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='PDARTSNet',
        genotype='PDARTS',  # a registry name, a genotype.json file or a DARTS string
        init_channels=48,
        layers=14,
        # levels 0-3: 48, 192, 384, 768 channels at strides 4, 8, 16, 32
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/pdarts_imagenet.pth')),
    neck=dict(in_channels=[48, 192, 384, 768]))
