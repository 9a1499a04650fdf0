# Faster R-CNN + FPN on COCO 2017, 1x schedule (12 epochs, SGD lr 0.02 for 16 images per batch), with
# the searched ImageNet network (backbones/mmdet_pdarts.py, registered as PDARTSNet) as the backbone.
# Run from the repository root: mim train mmdet detection_configs/faster-rcnn_pdarts_fpn_1x_coco.py
_base_ = './faster-rcnn_r50_fpn_1x_coco.py'  # MMDetection's, plus our hooks and dataset
work_dir = 'work_dirs/faster-rcnn_pdarts_fpn_1x_coco-PDARTS'  # names the genotype: change it with model.backbone.genotype

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
