# What every detection config of ours adds to MMDetection's (inherited beside an mmdet:: base): the modules that
# register our backbones, hook and dataset; MMDetection's NumClassCheckHook; MetricsJsonHook (metrics.json after the
# test, an empty evaluation an error, a work dir of another run refused; backbones/mmdet_metrics.py). The data
# loaders' type CocoFormatDataset (backbones/mmdet_datasets.py) is set in the configs themselves: MMEngine allows
# no key in two bases.
custom_imports = dict(
    imports=['backbones.mmdet_pdarts', 'backbones.mmdet_timm', 'backbones.mmdet_metrics', 'backbones.mmdet_datasets'],
    allow_failed_imports=False)
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='MetricsJsonHook')]
