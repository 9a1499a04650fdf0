# RetinaNet + FPN with ResNet-50 on COCO 2017, 1x schedule: MMDetection's config, the backbone initialised from a
# timm resnet50 ImageNet checkpoint (tools/train_imagenet.py --model resnet50; ResNetFromTimm, backbones/mmdet_timm.py:
# MMDetection's ResNet, every weight checked). The other detection configs of ours inherit this one for what they
# all add: MetricsJsonHook (metrics.json after the test, a work dir of another run refused), CocoFormatDataset (the
# classes of the annotation file unless metainfo sets them) and MMDetection's NumClassCheckHook.
# Run from the repository root: mim train mmdet detection_configs/retinanet_r50_fpn_1x_coco.py
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(
    imports=['backbones.mmdet_pdarts', 'backbones.mmdet_timm', 'backbones.mmdet_metrics', 'backbones.mmdet_datasets'],
    allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='ResNetFromTimm',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet50_imagenet.pth')))

train_dataloader = dict(dataset=dict(type='CocoFormatDataset'))
val_dataloader = dict(dataset=dict(type='CocoFormatDataset'))
test_dataloader = dict(dataset=dict(type='CocoFormatDataset'))
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='MetricsJsonHook')]
