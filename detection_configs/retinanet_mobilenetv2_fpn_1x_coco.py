# RetinaNet + FPN with MobileNetV2 on COCO 2017, 1x schedule: MMDetection's MobileNetV2 backbone initialised from a
# timm mobilenetv2_100 ImageNet checkpoint (tools/train_imagenet.py --model mobilenetv2_100; MobileNetV2FromTimm,
# backbones/mmdet_timm.py), otherwise retinanet_r50_fpn_1x_coco.py (ours: hooks, dataset, schedule).
# Run from the repository root: mim train mmdet detection_configs/retinanet_mobilenetv2_fpn_1x_coco.py
_base_ = './retinanet_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2FromTimm',
        widen_factor=1.0,
        # layer3, layer5 and the 1x1 head conv: 32, 96, 1280 channels at strides 8, 16, 32 (FPN adds 64 and 128)
        out_indices=(2, 4, 7),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilenetv2_imagenet.pth')),
    neck=dict(in_channels=[32, 96, 1280], start_level=0, add_extra_convs='on_input', num_outs=5))
