# Faster R-CNN + FPN with ResNet-50 on COCO 2017, 1x schedule: MMDetection's config, the backbone initialised from a
# timm resnet50 ImageNet checkpoint (tools/train_imagenet.py --model resnet50; ResNetFromTimm, backbones/mmdet_timm.py:
# MMDetection's ResNet, every weight checked), with what all our configs add (_base_/transfer_runtime.py: hooks,
# imports; here CocoFormatDataset: the classes of the annotation file unless metainfo sets them). The PDARTS and
# MobileNetV2 configs inherit this one.
# Run from the repository root: mim train mmdet detection_configs/faster-rcnn_r50_fpn_1x_coco.py
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', './_base_/transfer_runtime.py']

model = dict(
    backbone=dict(
        type='ResNetFromTimm',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet50_imagenet.pth')))

train_dataloader = dict(dataset=dict(type='CocoFormatDataset'))
val_dataloader = dict(dataset=dict(type='CocoFormatDataset'))
test_dataloader = dict(dataset=dict(type='CocoFormatDataset'))
