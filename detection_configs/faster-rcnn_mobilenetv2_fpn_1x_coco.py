# Faster R-CNN + FPN with MobileNetV2 on COCO 2017, 1x schedule: MMDetection's MobileNetV2 backbone initialised from
# a timm mobilenetv2_100 ImageNet checkpoint (tools/train_imagenet.py --model mobilenetv2_100; MobileNetV2FromTimm,
# backbones/mmdet_timm.py), otherwise faster-rcnn_r50_fpn_1x_coco.py (ours: hooks, dataset, schedule).
# Run from the repository root: mim train mmdet detection_configs/faster-rcnn_mobilenetv2_fpn_1x_coco.py
_base_ = './faster-rcnn_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2FromTimm',
        widen_factor=1.0,
        # layer2, layer3, layer5 and the 1x1 head conv: 24, 32, 96, 1280 channels at strides 4, 8, 16, 32
        out_indices=(1, 2, 4, 7),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilenetv2_imagenet.pth')),
    neck=dict(in_channels=[24, 32, 96, 1280]))
