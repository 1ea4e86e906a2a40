"""Training checkpoints and label files: the one module that writes and reads them.

A checkpoint of ``timm-inti-train`` is timm's training checkpoint, as
``timm.utils.CheckpointSaver`` writes it for a task (``epoch``, ``version``, ``state_dict``,
``optimizer``, the AMP scaler's state, ``saver`` bookkeeping, ``metric``, and
``state_dict_ema`` with ``--model-ema``), plus what rebuilds and labels the model:

* ``arch``: the timm model name; ``model_args``: the ``create_model`` kwargs of the run;
* ``label_names``: the class names, by class index;
* ``args``: the run's flags; ``step``: optimizer updates so far; ``lr_scheduler``: its state.

``create_model_from_checkpoint`` reads such a checkpoint (its EMA weights with
``use_ema=True``) or a plain weights file, through timm's loaders
(``timm.utils.load_checkpoint_metadata``, ``timm.models.load_state_dict``), and never runs
a pickle. Every failure is a ``CheckpointError``
naming the file. ``train``, ``predict`` and ``weights/export.py`` all go through here.
"""
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import timm
import timm.utils
import torch
import torch.nn as nn
from timm.task import ClassificationTask, load_task_ema_checkpoint, resume_task_checkpoint

from .files import atomic_path
from .hub import _is_torchscript, _write_failure, read_checkpoint
from .vit import CheckpointError, check_local_dir, create_video_model, resample_temporal_embed
from .vit import _video_class as video_class

__all__ = [
    'VideoClassificationTask', 'CheckpointSaver', 'read_checkpoint_metadata', 'is_training_checkpoint',
    'create_model_from_checkpoint', 'create_model', 'load_weights', 'resume_training', 'resume_ema',
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


class VideoClassificationTask(ClassificationTask):
    """timm's classification task, whose checkpoints also carry what rebuilds and labels the model."""

    def __init__(self, model, *, arch: str, model_args: Dict[str, Any], label_names: Sequence[str],
                 run_args: Dict[str, Any], **kwargs):
        super().__init__(model, **kwargs)
        self.checkpoint_extra = dict(arch=arch, model_args=model_args, label_names=list(label_names), args=run_args)
        self.lr_scheduler = None
        self.num_updates = 0

    def get_checkpoint_state(self, ema: bool = False, unwrap_fn=timm.utils.unwrap_model) -> Dict[str, Any]:
        state = super().get_checkpoint_state(ema=ema, unwrap_fn=unwrap_fn)
        if not ema:
            state.update(self.checkpoint_extra, step=self.num_updates)
            if self.lr_scheduler is not None:
                state['lr_scheduler'] = self.lr_scheduler.state_dict()
        return state


def _not_the_checkpoint_list(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Current checkpoints:')


class CheckpointSaver(timm.utils.CheckpointSaver):
    """timm's saver, writing each file through ``timm_inti.files.atomic_path``.

    timm writes ``tmp.pth.tar`` with ``torch.save`` and renames it to ``last.pth.tar``; a
    write that fails (a full disk) would leave that half-written file behind and end in
    torch's own error. Here it leaves nothing and says which path could not be written.
    timm logs its list of kept checkpoints at every save; here ``describe`` gives it once, at the end.
    """

    def _track_checkpoint(self, *args, **kwargs):
        saver_logger = logging.getLogger(timm.utils.CheckpointSaver.__module__)
        saver_logger.addFilter(_not_the_checkpoint_list)
        try:
            return super()._track_checkpoint(*args, **kwargs)
        finally:
            saver_logger.removeFilter(_not_the_checkpoint_list)

    def describe(self, metric_name: str = 'metric') -> str:
        """The kept epoch checkpoints, best first, with their metric: one line."""
        return ', '.join(os.path.basename(path) + ('' if metric is None else f' ({metric_name} {metric:.4g})')
                         for path, metric in self.checkpoint_files)

    def _save(self, save_path, epoch, metric=None):
        try:
            with atomic_path(save_path) as tmp:
                super()._save(tmp, epoch, metric)
        except Exception as e:
            final = os.path.join(os.path.dirname(save_path), 'last' + self.extension) \
                if os.path.basename(save_path) == 'tmp' + self.extension else save_path  # timm's name on the way
            failure = _write_failure(final, e)
            if failure is None:
                raise
            raise failure from e


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f'{path}: no such checkpoint file')
    if not path.is_file():
        raise CheckpointError(f'{path}: not a file')
    if path.stat().st_size == 0:
        raise CheckpointError(f'{path}: not a readable checkpoint (the file is empty, 0 bytes)')


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_checkpoint_metadata(path: PathLike) -> Optional[Dict[str, Any]]:
    """A checkpoint's entries, its tensors memory mapped (cheap for large files); None for a safetensors
    or TorchScript file, which holds weights only."""
    path = Path(path)
    _check_file(path)
    if path.suffix == '.safetensors' or _is_torchscript(path):
        return None
    if not zipfile.is_zipfile(path):  # torch's legacy format cannot be memory mapped
        checkpoint = read_checkpoint(path)
    else:
        try:
            checkpoint = timm.utils.load_checkpoint_metadata(str(path))
        except Exception as e:  # torch's and pickle's errors do not name the file
            raise CheckpointError(f'{path}: not a readable checkpoint ({_first_line(e)})') from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path}: holds a {type(checkpoint).__name__}, not a checkpoint')
    return checkpoint


def is_training_checkpoint(checkpoint: Optional[Dict[str, Any]]) -> bool:
    """Whether ``checkpoint`` (from ``read_checkpoint_metadata``) was written by a training run."""
    return isinstance(checkpoint, dict) and 'arch' in checkpoint and 'state_dict' in checkpoint


def _load_report(error: RuntimeError, limit: int = 400) -> str:
    """torch's load_state_dict report (missing keys, size mismatches) on one line."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()] or [_first_line(error)]
    text = '; '.join(lines)
    return text if len(text) <= limit else text[:limit] + ' ...'


def load_weights(model: nn.Module, path: PathLike, use_ema: bool = False, except_head: bool = False) -> None:
    """Load the weights of ``path`` (a training checkpoint, its EMA weights, or a plain state dict) into ``model``,
    all keys matching; a failure is a ``CheckpointError`` naming the file.

    ``except_head``: leave the model's classifier as it is (fine-tuning on other classes);
    every other key must still match.

    The checkpoint is read by timm's ``load_state_dict`` (which picks ``state_dict_ema`` with
    ``use_ema`` and strips DDP prefixes); a temporal embedding of another clip length is
    resampled to ``model.num_frames``, as pretrained loading does.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix != '.safetensors' and not zipfile.is_zipfile(path):
        read_checkpoint(path)  # refuses what is not a checkpoint, naming the file
    try:
        state_dict = timm.models.load_state_dict(str(path), use_ema=use_ema)
    except Exception as e:
        raise CheckpointError(f'{path}: not a readable checkpoint ({_first_line(e)})') from e
    embed = state_dict.get('temporal_embed')
    if isinstance(embed, torch.Tensor) and embed.ndim == 4 and hasattr(model, 'num_frames'):
        state_dict['temporal_embed'] = resample_temporal_embed(embed, model.num_frames)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    arch = cfg.get('architecture') or type(model).__name__
    if except_head:
        head = cfg.get('classifier') or 'head'
        for prefix in (head,) if isinstance(head, str) else head:
            for key in [k for k in state_dict if k.startswith(prefix + '.')]:
                del state_dict[key]
            state_dict.update({k: v for k, v in model.state_dict().items() if k.startswith(prefix + '.')})
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:  # load_state_dict's key and shape report
        raise CheckpointError(f'{path} does not fit {arch}: {_load_report(e)}') from e


def create_model_from_checkpoint(
        path: PathLike,
        model_name: Optional[str] = None,
        use_ema: bool = False,
        **model_kwargs,
) -> Tuple[nn.Module, Optional[List[str]]]:
    """The model stored in ``path`` and its label names (None when the file has none).

    A ``timm-inti-train`` checkpoint rebuilds its own architecture (``model_name`` is not
    needed); ``use_ema`` takes its EMA weights, and refuses a checkpoint without them. A
    plain weights file (``.safetensors``, ``.pth``, a state dict under ``state_dict``) loads
    into ``model_name`` through the model's pretrained filter, so it may also be a CLIP
    image tower; its class count follows ``head.weight``. ``model_kwargs`` override the
    stored model arguments (``num_frames``, say).
    """
    path = Path(path)
    checkpoint = read_checkpoint_metadata(path)
    if is_training_checkpoint(checkpoint):
        arch = checkpoint['arch']
        if use_ema and checkpoint.get('state_dict_ema') is None:
            raise CheckpointError(f'{path}: no EMA weights in this checkpoint (the run was trained without '
                                  f'--model-ema); leave out --use-ema')
        model = create_model(arch, **dict(checkpoint.get('model_args') or {}, **model_kwargs))
        load_weights(model, path, use_ema)
        label_names = checkpoint.get('label_names')
        return model, list(label_names) if label_names else None

    if model_name is None:
        raise CheckpointError(f'{path}: a weights file without its architecture; name the model it belongs to')
    if use_ema and not (checkpoint and checkpoint.get('state_dict_ema') is not None):
        raise CheckpointError(f'{path}: no EMA weights in this file; leave out --use-ema')
    if checkpoint is None and _is_torchscript(path):
        state_dict = read_checkpoint(path)
    else:
        try:
            state_dict = timm.models.load_state_dict(str(path), use_ema=use_ema)
        except Exception as e:
            raise CheckpointError(f'{path}: not a readable checkpoint ({_first_line(e)})') from e
    if not isinstance(state_dict, dict) or not state_dict or \
            not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f'{path}: holds no state dict (a dict of tensors)')
    kwargs = dict(model_kwargs)
    overlay = dict(state_dict=state_dict, file=str(path))
    if 'head.weight' in state_dict and 'num_classes' not in kwargs:
        # the file's head: timm's pretrained loading drops a head whose size differs from the cfg's
        kwargs['num_classes'] = overlay['num_classes'] = state_dict['head.weight'].shape[0]
    model = create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return model, None


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """The one way in for the commands: ``timm_inti.create_video_model``, with failures that name the model or file.

    Registered InTI names, any timm image model of a supported class (``vit_small_patch16_224``,
    ``vit_base_patch16_siglip_224.v2_webli``), and ``hf-hub:`` / ``local-dir:`` names of either
    become video models; the video kwargs (``num_frames``, ``inti_after``, ...) are taken by all of
    them. An unknown name, a model class that cannot become a video model (``resnet18``) and
    keyword arguments the model does not take are a ``ValueError`` naming them; a ``local-dir:``
    folder whose ``config.json`` is missing, empty, malformed or not a timm config is a
    ``CheckpointError`` naming the file.
    """
    source = None
    if name.startswith('local-dir:'):
        source = check_local_dir(name[len('local-dir:'):])
    elif not name.startswith('hf-hub:') and not timm.is_model(name):
        close = timm.list_models(f'*{name.split(".")[0][:12]}*')[:5] if name else []
        hint = f' (similar: {", ".join(close)})' if close else ''
        raise ValueError(f'unknown model {name!r}{hint}; timm.list_models("inti*") lists the InTI models')
    try:
        return create_video_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:  # a class that cannot become a video model, or an argument its constructor does not take
        _refuse_image_class(name)
        raise ValueError(str(e) if str(e).startswith(name) else f'{name}: {e}') from e
    except (KeyError, AttributeError) as e:  # timm's parse of a config.json that is not its own
        if source is None and not name.startswith('hf-hub:'):
            raise
        raise CheckpointError(f'{source or name + " config.json"}: not a timm model config '
                              f'({type(e).__name__}: {e})') from e


def _refuse_image_class(name: str) -> None:
    """A ``ValueError`` naming the supported classes when ``name`` is a timm model no video model is made from."""
    if name.startswith(('hf-hub:', 'local-dir:')):
        return
    try:
        with torch.device('meta'):  # the class only: no memory, no weights
            cls = type(timm.create_model(name))
    except Exception:  # noqa: BLE001  (the caller reports the first error)
        return
    try:
        video_class(cls, name)
    except TypeError as e:
        raise ValueError(str(e)) from None


def resume_training(task, path: PathLike, arch: str, optimizer=None, loss_scaler=None,
                    log_info: bool = True) -> Dict[str, Any]:
    """Restore model, optimizer and AMP scaler from a training checkpoint; return its metadata.

    The metadata's ``epoch`` is the one that finished; training continues at ``epoch + 1``.
    """
    path = Path(path)
    checkpoint = read_checkpoint_metadata(path)
    if not is_training_checkpoint(checkpoint) or 'epoch' not in checkpoint or 'optimizer' not in checkpoint:
        raise CheckpointError(f'{path}: not a training checkpoint (--resume takes last.pth.tar or another '
                              f'checkpoint of timm-inti-train; start from weights with --initial-checkpoint)')
    if checkpoint['arch'] != arch:
        raise CheckpointError(f'{path}: a checkpoint of {checkpoint["arch"]}, not of --model {arch}')
    try:
        resume_task_checkpoint(task, str(path), optimizer=optimizer, loss_scaler=loss_scaler, log_info=log_info)
    except RuntimeError as e:  # load_state_dict's key and shape report
        raise CheckpointError(f'{path} does not fit this run ({_load_report(e)}); resume with the same --model, '
                              f'--model-kwargs, --num-frames and --num-classes') from e
    except (ValueError, KeyError) as e:  # the optimizer's parameter groups differ
        raise CheckpointError(f'{path} does not fit this run\'s optimizer ({_first_line(e)}); resume with the '
                              f'same --opt, --layer-decay and --freeze-backbone') from e
    return checkpoint


def resume_ema(task, path: PathLike, checkpoint: Dict[str, Any]) -> None:
    """Restore the task's EMA weights (set up with ``task.setup_ema``) from a training checkpoint."""
    if checkpoint.get('state_dict_ema') is None:
        _logger.warning(f'{path} holds no EMA weights (its run had no --model-ema): the EMA starts from the model')
    try:
        load_task_ema_checkpoint(task, str(path))
    except RuntimeError as e:
        raise CheckpointError(f'{path}: its EMA weights do not fit this run ({_load_report(e)})') from e
