""" Checkpoints in the Hugging Face Hub's layout: save, publish, read safely, describe.

``save_pretrained`` writes what timm reads back with ``timm.create_model("local-dir:DIR")``
or, once uploaded, ``"hf-hub:org/name"``: ``model.safetensors``, ``config.json`` (timm's own
``save_for_hf`` writes it: architecture, num_classes, label names, pretrained cfg and the
model arguments that rebuild the architecture) and a model card ``README.md``. Every file
is written to a temporary folder inside the target folder and renamed into place, so a crash
never leaves a half-written file; weights of an earlier save in the other format are
removed, and so is the temporary folder of a save that was killed.

``push_to_hub`` uploads that folder with ``huggingface_hub``. timm's ``push_to_hf_hub``
does the same steps but writes its own generic model card, and only into a repository
that has none, so this project's card (InTI schedule, GFLOPs, the weights' origin) would
never be published; its weights and config writer, ``save_for_hf``, is used here.

``read_checkpoint`` reads weights files safely: safetensors first, ``torch.load`` with
``weights_only=True`` for PyTorch files, and full pickle only when asked; every failure
is a ``CheckpointError`` naming the file.
"""
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
from timm.models import save_for_hf

from .backbones import find_backbone, find_weights
from .inti import merged_num_frames
from .vit import OFFLINE_DOC, CheckpointError, hub_unreachable, load_failure_reason

__all__ = ['save_pretrained', 'push_to_hub', 'read_checkpoint', 'model_card', 'initialised_from',
           'hub_unreachable', 'OFFLINE_DOC']

_logger = logging.getLogger(__name__)

PAPER = 'Dynamic and Compressive Adaptation of Transformers From Images to Videos'
PAPER_URL = 'https://arxiv.org/abs/2408.06840'
CITATION = '''@inproceedings{inti2024,
  title     = {Dynamic and Compressive Adaptation of Transformers From Images to Videos},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024},
  eprint    = {2408.06840},
  archivePrefix = {arXiv},
}'''


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('constants.pkl') or '/code/' in name for name in archive.namelist())


def read_checkpoint(path: Union[str, Path], allow_pickle: bool = False) -> Dict[str, Any]:
    """Read a checkpoint file without running code from it.

    safetensors files load directly. PyTorch files load with ``weights_only=True``;
    TorchScript archives (OpenAI's CLIP releases) give their state dict. ``allow_pickle``
    permits arbitrary pickles: only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    if path.stat().st_size == 0:
        raise CheckpointError(f'{path}: not a readable checkpoint (the file is empty, 0 bytes)')
    if path.suffix != '.safetensors' and not _starts_like_torch(path):
        raise CheckpointError(f'{path}: not a readable checkpoint (neither safetensors, a PyTorch archive '
                              f'nor a pickle)')
    try:
        if path.suffix == '.safetensors':
            from safetensors.torch import load_file
            return load_file(path)
        if _is_torchscript(path):
            with warnings.catch_warnings():  # torch deprecates TorchScript, but OpenAI released CLIP in it
                warnings.filterwarnings('ignore', message='`torch.jit.load` is deprecated', category=FutureWarning)
                return torch.jit.load(str(path), map_location='cpu').state_dict()
        return torch.load(path, map_location='cpu', weights_only=not allow_pickle)
    except Exception as e:  # each format has its own errors; to a caller they all mean the same
        reason, holds_objects = load_failure_reason(e)  # never torch's advice to unpickle an unknown file
        hint = '; if you trust the file, allow pickle' if holds_objects and not allow_pickle else ''
        raise CheckpointError(f'{path}: not a readable checkpoint ({reason}){hint}') from e


def _starts_like_torch(path: Path) -> bool:
    """A zip archive (torch.save, TorchScript) starts with PK; torch's legacy format and pickles with PROTO."""
    with open(path, 'rb') as f:
        head = f.read(2)
    return head == b'PK' or head[:1] == b'\x80'


def _video_model_args(model: nn.Module) -> Dict[str, Any]:
    """What rebuilds the video architecture, whether or not it was passed to create_model."""
    return dict(num_frames=model.num_frames, inti_after=list(model.inti_after))


def _schedule(model: nn.Module) -> str:
    if not model.inti_after:
        return 'none (naive per-frame adaptation)'
    frames = model.num_frames_after(model.num_frames)  # frames each block sees
    return ', '.join(f'after block {k} ({frames[k - 1]} -> {merged_num_frames(frames[k - 1])} frames)'
                     for k in model.inti_after)


def _temporal_modules(model: nn.Module) -> str:
    if model.adapters is None:
        return 'none'
    adapter = model.adapters[0]
    kernel = 'x'.join(str(k) for k in adapter.conv.kernel_size)
    return (f'a spatio-temporal adapter before every block (ST-Adapter style: bottleneck width '
            f'{adapter.down.out_features}, depthwise {kernel} convolution over time x height x width)')


@dataclass(frozen=True)
class _TowerCard:
    """How a card names an image tower family, what its head outputs, and whom to cite."""
    tower: str
    head: str
    citation: str


_TOWER_CARDS = {
    'clip': _TowerCard(
        'CLIP image tower', "The head is CLIP's image projection: outputs are CLIP image embeddings.",
        'CLIP: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", '
        'ICML 2021, https://arxiv.org/abs/2103.00020'),
    'siglip': _TowerCard(
        'SigLIP image tower', 'There is no head: the attention-pooled features are the SigLIP image embedding.',
        'SigLIP: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023, '
        'https://arxiv.org/abs/2303.15343; SigLIP 2: Tschannen et al., 2025, https://arxiv.org/abs/2502.14786'),
    'dinov2': _TowerCard(
        'self-supervised DINOv2 image tower (with registers)', 'There is no head: outputs are DINOv2 features.',
        'DINOv2: Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", TMLR 2024, '
        'https://arxiv.org/abs/2304.07193; registers: Darcet et al., "Vision Transformers Need Registers", '
        'ICLR 2024, https://arxiv.org/abs/2309.16588'),
    'augreg': _TowerCard(
        'supervised ViT (AugReg, ImageNet-21k)', 'The head is the image classifier of the weights.',
        'AugReg: Steiner et al., "How to train your ViT? Data, Augmentation, and Regularization in Vision '
        'Transformers", TMLR 2022, https://arxiv.org/abs/2106.10270'),
    'pe': _TowerCard(
        'Perception Encoder (PE-Core) image tower',
        "The head is PE's image projection, after its attention pool: outputs are PE-Core image embeddings.",
        'Perception Encoder: Bolya et al., "Perception Encoder: The best visual embeddings are not at the output '
        'of the network", 2025, https://arxiv.org/abs/2504.13181'),
    'dinov3': _TowerCard(
        'self-supervised DINOv3 image tower', 'There is no head: outputs are DINOv3 features (mean of patch tokens).',
        'DINOv3: Siméoni et al., "DINOv3", 2025, https://arxiv.org/abs/2508.10104'),
    'eva02': _TowerCard(
        'EVA02-CLIP image tower', "The head is EVA02-CLIP's image projection: outputs are its image embeddings.",
        'EVA-CLIP: Sun et al., "EVA-CLIP: Improved Training Techniques for CLIP at Scale", 2023, '
        'https://arxiv.org/abs/2303.15389'),
}
_HUB_LICENCES = ('mit', 'apache-2.0')  # licences the Hub's front matter names; others are 'other' plus a name
_HUB_URL = 'https://huggingface.co/'


def initialised_from(model: nn.Module) -> Optional[str]:
    """The Hub id of the published image weights ``model`` was built from, or None when that is not known.

    Known only when the model (or the model it was saved from) loaded an image tower from the Hub
    under a pretrained tag: ``timm_inti.vit``'s checkpoint filter then records it as the cfg's
    ``origin_url``, which ``config.json`` carries. A model built without weights, or from a file, has none.
    """
    origin = (getattr(model, 'pretrained_cfg', None) or {}).get('origin_url') or ''
    return origin[len(_HUB_URL):] if origin.startswith(_HUB_URL) else None


def model_card(
        model: nn.Module,
        label_names: Optional[Sequence[str]] = None,
        finetuned_on: Optional[str] = None,
        description: Optional[str] = None,
        load_as: str = 'hf-hub:ORG/NAME',
        origin: Optional[str] = None,
) -> str:
    """A Hub model card (README.md) for an InTI video model, stating only what is known.

    Args:
        label_names: The classes of a fine-tuned head.
        load_as: The name ``timm.create_model`` loads it by, for the usage example.
        finetuned_on: The data the weights were fine-tuned on, when given.
        origin: The Hub id of the image weights the model starts from; by default the one the
            model's cfg records (``initialised_from``). Without one, the card names no tower and no
            licence ("unknown").
    """
    from .flops import formula_flops  # fvcore loads only when a card is written
    cfg = model.pretrained_cfg
    arch = cfg.get('architecture', type(model).__name__)
    origin = origin or initialised_from(model)
    known = find_weights(origin)  # (backbone, tag, weights) of a tower in the table
    found = find_backbone(arch) if arch else None
    backbone = known[0] if known else found[0] if found else None
    family = _TOWER_CARDS.get(backbone.family) if backbone else None
    frames = model.num_frames
    height, width = model.patch_embed.img_size
    flops = formula_flops(model, frames, (height, width))  # the closed form, equal to fvcore's count
    params = sum(p.numel() for p in model.parameters()) / 1e6
    licence = (known[2].license if known else cfg.get('license')) if origin else None
    tower = f'the {family.tower} `{origin}`' if origin and family else f'the image weights `{origin}`'

    if finetuned_on:
        start = f'starting from {tower}' if origin else 'starting weights: unknown'
        classes = len(label_names or []) or model.num_classes
        weights_text = f'Fine-tuned on {finetuned_on}, {start}. The head predicts {classes} classes.'
    elif origin:
        head = f' {family.head}' if family and model.num_classes == cfg.get('num_classes') else ''
        weights_text = (
            f'**An initialisation, not a trained video model.** The transformer weights are {tower}, '
            f'unchanged; the InTI layers start as an exact average of each frame pair, the temporal embedding '
            f'and any temporal modules at zero, so before fine-tuning the model is temporal average pooling '
            f'of the tower\'s per-frame features.{head}')
    else:
        weights_text = ('Origin of the weights: unknown (not built from published image weights, or their '
                        'source was not recorded). Training data: unknown.')
    front = {
        'library_name': 'timm',
        'license': licence if licence in _HUB_LICENCES else 'other',
        **({'license_name': licence} if licence and licence not in _HUB_LICENCES else {}),
        'pipeline_tag': 'video-classification',
        'tags': ['timm', 'timm-inti', 'video-classification', 'inti', *([backbone.family] if backbone else [])],
    }
    labels = ''
    if label_names:
        shown = ', '.join(label_names[:20]) + (f', ... ({len(label_names)} in all)' if len(label_names) > 20 else '')
        labels = f'\n## Classes\n\n{shown}\n'
    kind = 'Eva-class ViT (2-D rotary position embeddings)' if hasattr(model, 'rope') else 'ViT'
    tower_name = backbone.description if backbone and (origin or found) else 'Vision Transformer'
    citations = [f'- The image tower: {family.citation}'] if family and origin else []
    lines = [
        '---',
        *(f'{k}: {json.dumps(v)}' for k, v in front.items()),
        '---',
        '',
        f'# {arch}',
        '',
        description or (f'A {tower_name} for video with InTI (Inter-frame Token Interpolation) layers, built '
                        f'with timm-inti on timm.'),
        '',
        '## Model details',
        '',
        f'- Architecture: {kind}, {len(model.blocks)} blocks, width {model.embed_dim}, patch '
        f'{model.patch_embed.patch_size[0]}, {height}x{width} frames',
        f'- InTI schedule: {_schedule(model)}',
        f'- Temporal modules: {_temporal_modules(model)}',
        f'- Clip length: {frames} frames (other lengths work; the temporal embedding is resampled)',
        f'- Parameters: {params:.1f} M',
        f'- GFLOPs per {frames}-frame clip of {height}x{width} frames: {flops.gflops:.1f} (10^9 multiply-adds, '
        f'one view, attention included; InTI layers {100 * flops.inti_share:.2f}% of it)',
        f'- Input: float clips (B, C, T, H, W), normalised with mean {tuple(round(m, 4) for m in cfg.get("mean", ()))} '
        f'and std {tuple(round(s, 4) for s in cfg.get("std", ()))}',
        '',
        '## Weights',
        '',
        weights_text,
        '',
        f'Licence: {licence}, as the weights it derives from.' if licence else
        'Licence: unknown (that of the weights it was trained from, which are not recorded).',
        labels,
        '## Use',
        '',
        '```python',
        'import timm, timm_inti',
        f'model = timm.create_model("{load_as}", pretrained=True).eval()',
        'logits = model(clip)  # clip: (B, 3, T, H, W)',
        '```',
        '',
        'Intended for video classification and video feature extraction research. '
        'InTI merges neighbouring frames early, so fine-grained temporal order within merged '
        'pairs is summarised rather than kept.',
        '',
        '## Citation',
        '',
        f'- InTI: "{PAPER}" ({PAPER_URL}). The paper\'s code is not public; this model '
        'is an independent implementation, and its weight network is this project\'s design.',
        *citations,
        '',
        '```bibtex',
        CITATION,
        '```',
        '',
    ]
    return '\n'.join(lines)


_WEIGHTS_FILES = ('model.safetensors', 'pytorch_model.bin')  # timm's save_for_hf names; local-dir: prefers the first
_TMP_PREFIX = '.tmp-save_pretrained-'


def _replace_into(tmp_dir: Path, directory: Path) -> None:
    from .files import _umask
    written = {item.name for item in tmp_dir.iterdir()}
    for item in sorted(tmp_dir.iterdir(), key=lambda p: p.name == 'config.json'):  # config last
        os.chmod(item, 0o666 & ~_umask())  # safetensors writes 0600: outputs are ordinary files
        os.replace(item, directory / item.name)
    for name in _WEIGHTS_FILES:  # weights of an earlier save in the other format would be the ones that load
        if name not in written and (directory / name).exists():
            (directory / name).unlink()


def _write_failure(path: Union[str, Path], error: BaseException) -> Optional[OSError]:
    """The ``OSError`` naming ``path`` for a write that failed (a full disk, a file size limit), or None.

    torch's archive writer reports a failed write as a RuntimeError and safetensors as its own
    error, neither with the file name; both are told apart from other errors by their text.
    """
    text = str(error)
    code = getattr(error, 'errno', None)
    if code is None:
        match = re.search(r'os error (\d+)', text)
        code = int(match.group(1)) if match else None
    if code is None and ('inline_container' in text or 'PytorchStreamWriter' in text):
        code = errno.EIO
    if code is None:
        return None
    with contextlib.suppress(OSError):
        if os.statvfs(Path(path).parent).f_bavail == 0:
            code = errno.ENOSPC
    reason = os.strerror(code) if code != errno.EIO else f'the write failed ({text.strip().splitlines()[0]})'
    return OSError(code, f'cannot write {path}: {reason}', str(path))


def _not_ours(directory: Path) -> list:
    """Files of ``directory`` that a save would replace and that no earlier save wrote (a user's own)."""
    found = []
    readme, config = directory / 'README.md', directory / 'config.json'
    if readme.is_file():
        try:
            text = readme.read_text()
        except (OSError, UnicodeDecodeError):
            text = ''
        if 'timm-inti' not in text:  # the card names the project (its front matter tags it)
            found.append(readme.name)
    if config.is_file():
        try:
            cfg = json.loads(config.read_text())
            ours = isinstance(cfg, dict) and 'architecture' in cfg and 'num_frames' in (cfg.get('model_args') or {})
        except (OSError, UnicodeDecodeError, ValueError):
            ours = False
        if not ours:
            found.append(config.name)
    if found or not config.is_file():  # weights beside someone else's files, or without a config, are theirs too
        found += [name for name in _WEIGHTS_FILES if (directory / name).is_file()]
    return found


def check_save_folder(directory: Union[str, Path], overwrite: bool = False) -> None:
    """Refuse (``FileExistsError``) a folder holding files that ``save_pretrained`` did not write, unless
    ``overwrite``: what a command checks before its work, so that it fails before, not after."""
    directory = Path(directory)
    theirs = _not_ours(directory) if directory.is_dir() and not overwrite else []
    if theirs:
        raise FileExistsError(f'{directory} holds {", ".join(theirs)} that save_pretrained did not write: they would '
                              f'be replaced; name another folder (or pass overwrite=True, --overwrite)')


def _remove_stale_tmp(directory: Path) -> None:
    """Temporary folders of an earlier save that was killed before it could clean up."""
    for stale in directory.glob(f'{_TMP_PREFIX}*'):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def save_pretrained(
        model: nn.Module,
        directory: Union[str, Path],
        label_names: Optional[Sequence[str]] = None,
        finetuned_on: Optional[str] = None,
        safe_serialization: Union[bool, str] = True,
        load_as: Optional[str] = None,
        overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``directory`` in the Hub layout (safetensors, config.json, README.md).

    ``timm.create_model("local-dir:DIR", pretrained=True)`` rebuilds an identical model.
    An earlier save in ``directory`` is replaced; files it did not write (a README.md or
    config.json of your own) are refused with ``FileExistsError`` unless ``overwrite``.
    ``label_names``: one class name per class, a list (a string is refused, not split into letters).
    """
    if directory is None or not str(directory).strip():
        raise ValueError(f'save_pretrained needs a folder to write to, got {directory!r} (the current folder would '
                         f'be used): name one')
    if isinstance(label_names, (str, bytes)):
        raise ValueError(f'label_names must be a list of class names, one per class, not the string '
                         f'{label_names[:40]!r}')
    if label_names is not None and len(label_names) != model.num_classes:
        raise ValueError(f'{len(label_names)} label names for a model with {model.num_classes} classes')
    directory = Path(directory)
    check_save_folder(directory, overwrite)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(directory)
    card = model_card(model, label_names, finetuned_on, load_as=load_as or f'local-dir:{directory}')
    try:
        with tempfile.TemporaryDirectory(dir=directory, prefix=_TMP_PREFIX) as tmp:
            tmp = Path(tmp)
            model_config = dict(label_names=list(label_names)) if label_names else None
            save_for_hf(model, tmp, model_config=model_config, model_args=_video_model_args(model),
                        safe_serialization=safe_serialization)
            (tmp / 'README.md').write_text(card)
            _replace_into(tmp, directory)
    except Exception as e:
        failure = _write_failure(directory, e)
        if failure is None:
            raise
        raise failure from e
    return directory


def push_to_hub(
        model: nn.Module,
        repo_id: str,
        label_names: Optional[Sequence[str]] = None,
        finetuned_on: Optional[str] = None,
        private: bool = False,
        token: Optional[str] = None,
        commit_message: str = 'Add InTI video model',
        dry_run: bool = False,
        local_dir: Optional[Union[str, Path]] = None,
) -> Union[str, Path]:
    """Upload ``model`` to the Hub as ``save_pretrained`` lays it out.

    The token comes from ``token`` or huggingface_hub's usual places (``HF_TOKEN``, the login
    cache). ``dry_run`` only writes the folder (to ``local_dir`` or a new temporary folder)
    and returns its path; otherwise returns the commit URL.
    """
    folder = Path(local_dir) if local_dir else Path(tempfile.mkdtemp(prefix='timm_inti_push_'))
    save_pretrained(model, folder, label_names=label_names, finetuned_on=finetuned_on, load_as=f'hf-hub:{repo_id}')
    if dry_run:
        return folder
    return publish_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)


def publish_folder(folder: Union[str, Path], repo_id: str, private: bool = False, token: Optional[str] = None,
                   commit_message: str = 'Add InTI video model') -> str:
    """Upload a ``save_pretrained`` folder to Hub repo ``repo_id`` (created if missing); returns the commit URL."""
    from huggingface_hub import HfApi
    folder = Path(folder)
    missing = [name for name in ('config.json', 'model.safetensors') if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f'{folder} is not a save_pretrained folder: {", ".join(missing)} missing')
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                               ignore_patterns=[f'{_TMP_PREFIX}*', f'{_TMP_PREFIX}*/*'])
    return getattr(commit, 'commit_url', str(commit))
