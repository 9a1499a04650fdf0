# RetinaNet + FPN on COCO 2017, 1x schedule (12 epochs, SGD lr 0.01 for 16 images per batch), with the
# searched ImageNet network (backbones/mmdet_pdarts.py, registered as PDARTSNet) as the backbone.
# Run from the repository root: mim train mmdet detection_configs/retinanet_pdarts_fpn_1x_coco.py
_base_ = './retinanet_r50_fpn_1x_coco.py'  # MMDetection's, plus our hooks and dataset
work_dir = 'work_dirs/retinanet_pdarts_fpn_1x_coco-PDARTS'  # names the genotype: change it with model.backbone.genotype

model = dict(
    backbone=dict(
        _delete_=True,
        type='PDARTSNet',
        genotype='PDARTS',  # a registry name, a genotype.json file or a DARTS string
        init_channels=48,
        layers=14,
        # levels 1-3: 192, 384, 768 channels at strides 8, 16, 32 (FPN adds 64 and 128 on the input)
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/pdarts_imagenet.pth')),
    neck=dict(in_channels=[192, 384, 768], start_level=0, add_extra_convs='on_input', num_outs=5))
