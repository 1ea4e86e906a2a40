""" Video Vision Transformer with InTI (Inter-frame Token Interpolation)

An image ViT from timm (CLIP, SigLIP, DINOv2, ...) applied to every frame of a clip, with InTI layers between
blocks that merge neighbouring frames, so later blocks process half the frames each time.
After "Dynamic and Compressive Adaptation of Transformers From Images to Videos"
(ECCV 2024, https://arxiv.org/abs/2408.06840); the paper's code is not public, and the
choices below that the paper does not state are this project's (docs/paper.md).

  * input (B, C, T, H, W); a 4-D (B, C, H, W) batch is a one-frame clip, and its outputs
    drop the time axis, so image tooling keeps working;
  * ``inti_after=(k, ...)`` places an InTI layer after the first k blocks; ``()`` is naive
    per-frame adaptation, the baseline every comparison uses;
  * a learned temporal position embedding (zero at init, resampled for other clip lengths);
  * optional temporal modules (``adapter_dim``): an ST-Adapter-style spatio-temporal adapter
    before every block, running on the frames that block sees (zero at init);
  * the head sees the per-frame pooled tokens (class tokens for CLIP, SigLIP's attention
    pool) averaged over the frames that remain.

The blocks, patch embedding, norms, pooling and checkpoint conversion are timm's own. The time
handling is written once, in ``VideoTransformerMixin``, and mixed into two timm image classes:
``VideoVisionTransformer`` (timm's ``VisionTransformer``: CLIP, SigLIP, DINOv2, AugReg) and
``VideoEva`` (timm's ``Eva``: Perception Encoder, DINOv3, EVA02, with 2-D rotary embeddings that
are the same for every frame's patch grid); each class only says how a frame is embedded and
how a block is called. With InTI layers at their averaging init and a zero temporal embedding,
a model initialised from image weights equals the image model on a one-frame clip.

Below the models: the checkpoint filter, ``create_video_model`` (any timm ``VisionTransformer`` or
``Eva`` with its own weights and cfg becomes a video model), and the registrations, generated
from the backbone table in ``timm_inti.backbones``.
"""
import json
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
from einops import rearrange
from safetensors import SafetensorError
from timm.models import (
    build_model_with_cfg,
    checkpoint,
    generate_default_cfgs,
    is_model,
    load_pretrained,
    register_model,
    resolve_pretrained_cfg,
)
from timm.models._builder import _resolve_pretrained_source
from timm.models._features import feature_take_indices
from timm.models._input import update_model_args
from timm.models.eva import Eva
from timm.models.eva import checkpoint_filter_fn as _eva_checkpoint_filter_fn
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as _vit_checkpoint_filter_fn

from .backbones import BACKBONES, Backbone, Weights, find_backbone
from .inti import InTI, merged_num_frames
from .temporal import STAdapter
from .video_cfg import VIDEO_KWARGS, VideoCfg, quarter_schedule

__all__ = [
    'VideoTransformerMixin', 'VideoVisionTransformer', 'VideoEva', 'CheckpointError', 'MODEL_ALIASES',
    'checkpoint_filter_fn', 'create_video_model',
    'register_backbone',
    'resample_temporal_embed',
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and keys."""


def resample_temporal_embed(embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Linearly resample a temporal position embedding (1, T, 1, D) to ``num_frames`` frames.

    ``F.interpolate(mode='linear', align_corners=False)``'s formula, written with tensor ops
    (which torch.export keeps symbolic in ``num_frames``), and not skipped at the same length
    under ``torch.export``: a branch on the clip length would tie an exported graph's frame
    axis to it (``timm_inti.export``). At the same length it is an identity.
    """
    length = embed.shape[1]
    if not torch.compiler.is_exporting() and length == num_frames:  # in this order: no guard on the length
        return embed
    position = (torch.arange(num_frames, device=embed.device, dtype=torch.float32) + 0.5) * (length / num_frames) - 0.5
    position = position.clamp(min=0)
    low = position.floor().long().clamp(max=length - 1)
    high = (low + 1).clamp(max=length - 1)
    weight = (position - low).view(1, num_frames, 1, 1)
    x = embed.float()
    return (x[:, low] * (1 - weight) + x[:, high] * weight).to(embed.dtype)


class VideoTransformerMixin:
    """ The time handling of a per-frame video transformer, shared by every image class it is mixed into.

    Mixed in before a timm image transformer (``VisionTransformer``, ``Eva``): clips (B, C, T, H, W)
    are embedded per frame, get a temporal position embedding, run through the image blocks as a
    batch of frames with InTI layers merging frames between blocks, and are pooled per frame by
    the image class's own pooling, then averaged over the frames that remain. The image class
    supplies two hooks: ``_embed_frames`` (frames -> tokens with every position embedding, plus
    what its blocks need, e.g. a rotary embedding) and ``_run_block``.

    Every argument of the image class is accepted and means the same, plus the video options,
    the fields of ``timm_inti.video_cfg.VideoCfg`` (``num_frames``, ``inti_after``, ``inti_*``,
    ``adapter_*``), as flat kwargs: what ``timm.create_model`` passes and saved configs store.
    """
    # parameters an image checkpoint does not have; a CLIP tower leaves them at their init
    video_only_prefixes: Tuple[str, ...] = ('temporal_embed', 'inti.', 'adapters.')

    def __init__(self, **kwargs: Any) -> None:
        video_cfg = VideoCfg.pop_from(kwargs)
        super().__init__(**kwargs)
        self._init_video_parts(
            video_cfg, patch_drop_rate=kwargs.get('patch_drop_rate', 0.), device=kwargs.get('device'),
            dtype=kwargs.get('dtype'))

    def _init_video_parts(self, video_cfg: VideoCfg, patch_drop_rate: float = 0., device=None, dtype=None) -> None:
        """Add what an image ViT lacks: the temporal embedding, the InTI layers and the temporal modules."""
        dd = {'device': device, 'dtype': dtype}
        depth = len(self.blocks)
        cfg = video_cfg.checked(depth)
        if cfg.inti_after and patch_drop_rate:
            raise ValueError('patch_drop_rate > 0 drops different patches in every frame; InTI needs them aligned')

        self.num_frames = cfg.num_frames
        self.feature_dim = -1  # forward_features: (B, T', N, D) for clips, (B, N, D) for images
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, 1, self.embed_dim, **dd))
        self.inti = nn.ModuleDict({
            str(k): InTI(
                self.embed_dim,
                num_prefix_tokens=self.num_prefix_tokens,
                hidden_dim=cfg.inti_hidden_dim,
                kernel_sizes=cfg.inti_kernel_sizes,
                global_context=cfg.inti_global_context,
                weighting=cfg.inti_weighting,
                **dd,
            )
            for k in cfg.inti_after
        })
        self.adapters = nn.ModuleList([
            STAdapter(
                self.embed_dim, cfg.adapter_dim, cfg.adapter_kernel_size,
                num_prefix_tokens=self.num_prefix_tokens, **dd)
            for _ in range(depth)
        ]) if cfg.adapter_dim else None

    @property
    def inti_after(self) -> Tuple[int, ...]:
        """Block counts after which an InTI layer merges frames."""
        return tuple(int(k) for k in self.inti)

    def num_frames_after(self, num_frames: int) -> List[int]:
        """Frames each block sees for a clip of ``num_frames`` frames."""
        frames = []
        for i in range(len(self.blocks)):
            frames.append(num_frames)
            if str(i + 1) in self.inti:
                num_frames = merged_num_frames(num_frames)
        return frames

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return super().no_weight_decay() | {'temporal_embed'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Union[str, List]]:
        # an InTI layer after k blocks joins the group of the block it feeds (blocks.k), an adapter its block
        return dict(
            stem=r'^(?:cls_token|reg_token|pos_embed|temporal_embed|patch_embed|norm_pre)',
            blocks=[(r'^(?:blocks|adapters)\.(\d+)', None), (r'^inti\.(\d+)', None), (r'^norm', (99999,))],
        )

    def _as_clip(self, x: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        """Check the input and return it as a clip (B, C, T, H, W), and whether it was an image batch."""
        expected = 'a float tensor clip (B, C, T, H, W) or image batch (B, C, H, W)'
        if not isinstance(x, torch.Tensor):
            kind = type(x).__name__
            hint = {'ndarray': ': convert it with torch.from_numpy(x)', 'list': ': stack the clips with torch.stack',
                    'tuple': ': stack the clips with torch.stack'}.get(kind, '')
            raise TypeError(f'{type(self).__name__} expects {expected}, got a {type(x).__module__}.{kind}{hint}')
        if not x.is_floating_point():
            raise TypeError(
                f'{type(self).__name__} expects {expected}, got dtype {x.dtype}: scale uint8 frames to [0, 1] with '
                f'x.float() / 255 and normalise them with the model\'s mean and std '
                f'(timm.data.resolve_data_config(model=model)), as timm_inti.video\'s transforms do')
        weight = self.patch_embed.proj.weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f'the input is {x.dtype} and the model {weight.dtype}: convert one to the other '
                f'(x.to({weight.dtype}) or model.to({x.dtype})), or run under torch.autocast')
        if x.ndim not in (4, 5):
            raise ValueError(
                f'{type(self).__name__} expects a clip (B, C, T, H, W) or an image batch (B, C, H, W), '
                f'got a {x.ndim}-D tensor of shape {tuple(x.shape)}')
        is_image = x.ndim == 4
        if is_image:
            x = x.unsqueeze(2)
        _, channels, frames, height, width = x.shape
        if channels != self.in_chans:
            hint = ''
            if not is_image and frames == self.in_chans:
                hint = " It looks like (B, T, C, H, W): use einops.rearrange(x, 'b t c h w -> b c t h w')."
            raise ValueError(
                f'expected {self.in_chans} channels in dim 1 of (B, C, T, H, W), got {channels} '
                f'(input shape {tuple(x.shape)}).{hint}')
        if frames < 1:
            raise ValueError(f'expected at least one frame in dim 2 of (B, C, T, H, W), got {frames}')
        if x.shape[0] == 0:
            raise ValueError(f'empty batch: expected at least one clip in dim 0, got input shape {tuple(x.shape)}')
        embed = self.patch_embed
        (patch_h, patch_w), (model_h, model_w) = embed.patch_size, embed.img_size
        if not embed.dynamic_img_pad and (height % patch_h or width % patch_w):
            # checked first: creating the model for this size would not help
            fit_h, fit_w = max(height // patch_h, 1) * patch_h, max(width // patch_w, 1) * patch_w
            then = '' if (fit_h, fit_w) == (model_h, model_w) or not embed.strict_img_size else \
                f', and create the model with img_size=({fit_h}, {fit_w})'
            raise ValueError(
                f'frame size {height}x{width} is not a multiple of the patch size {patch_h}x{patch_w}: resize or '
                f'crop the frames to a multiple, e.g. {fit_h}x{fit_w}{then}')
        if embed.strict_img_size and (height, width) != (model_h, model_w):
            raise ValueError(
                f'expected {model_h}x{model_w} frames, got {height}x{width}. Create the model '
                f'with img_size=({height}, {width}) to resample its position embedding, or dynamic_img_size=True.')
        return x, is_image

    def _temporal_embed(self, num_frames: int) -> torch.Tensor:
        return resample_temporal_embed(self.temporal_embed, num_frames)

    def _embed_frames(self, x: torch.Tensor, batch: int) -> Tuple[torch.Tensor, Any]:
        """Frames ((B T), C, H, W) -> tokens (B, T, N, D) with every position embedding, and what the blocks need."""
        raise NotImplementedError

    def _run_block(self, index: int, x: torch.Tensor, block_args: Any) -> torch.Tensor:
        """Image block ``index`` on a batch of frames ((B T), N, D)."""
        raise NotImplementedError

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int], bool, Any]:
        """Clip -> tokens (B, T, N, D) with spatial and temporal position embeddings, the patch grid, whether it
        was an image batch, and what the blocks need besides the tokens (the rotary embedding of the grid)."""
        x, is_image = self._as_clip(x)
        batch, _, frames, height, width = x.shape
        grid_size = self.patch_embed.dynamic_feat_size((height, width))
        x, block_args = self._embed_frames(rearrange(x, 'b c t h w -> (b t) c h w'), batch)
        return x, grid_size, is_image, block_args

    def _block(self, index: int, x: torch.Tensor, grid_size: Tuple[int, int], block_args: Any = None) -> torch.Tensor:
        """Block ``index`` (after its adapter, if any) on tokens (B, T, N, D), as a batch of frames."""
        if self.adapters is not None:
            x = self.adapters[index](x, grid_size)
        batch = x.shape[0]
        x = self._run_block(index, rearrange(x, 'b t n d -> (b t) n d'), block_args)
        return rearrange(x, '(b t) n d -> b t n d', b=batch)

    def _forward_blocks(
            self,
            x: torch.Tensor,
            grid_size: Tuple[int, int],
            take_indices: Sequence[int] = (),
            num_blocks: Optional[int] = None,
            block_args: Any = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the blocks, merging frames after the InTI positions.

        Tokens (B, T, N, D) in and out; blocks see them as a batch of frames ((B T), N, D).
        Returns the output and the outputs of the blocks in ``take_indices``. ``block_args`` (a rotary
        embedding of the patch grid) is the same for every frame, so it stays valid after a merge: InTI merges
        tokens of the same grid position.
        """
        intermediates = []
        for i in range(len(self.blocks) if num_blocks is None else num_blocks):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(self._block, i, x, grid_size, block_args)
            else:
                x = self._block(i, x, grid_size, block_args)
            if i in take_indices:
                intermediates.append(x)
            if str(i + 1) in self.inti:
                x = self.inti[str(i + 1)](x, grid_size)
        return x, intermediates

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> normalised tokens (B, T', N, D); (B, C, H, W) -> (B, N, D)."""
        x, grid_size, is_image, block_args = self._embed(x)
        x, _ = self._forward_blocks(x, grid_size, block_args=block_args)
        x = self.norm(x)
        return x.squeeze(1) if is_image else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool every frame as timm's ViT does, average over frames, then the head.

        Takes (B, T', N, D) tokens, or (B, N, D) for a single frame.
        """
        is_image = x.ndim == 3
        if is_image:
            x = x.unsqueeze(1)
        batch = x.shape[0]
        x = self.pool(rearrange(x, 'b t n d -> (b t) n d'))
        x = rearrange(x, '(b t) ... -> b t ...', b=batch)
        if self.global_pool:
            x = x.mean(dim=1)  # average the pooled frames
        elif is_image:
            x = x.squeeze(1)
        x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            return_prefix_tokens: bool = False,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features and the outputs of selected blocks.

        Args:
            x: Clip (B, C, T, H, W) or image batch (B, C, H, W).
            indices: Take the last n blocks if an int, all if None, the listed ones if a sequence.
            return_prefix_tokens: Return (spatial, prefix) token pairs.
            norm: Apply the final norm to the intermediates.
            stop_early: Stop after the last block needed.
            output_fmt: 'NCHW': (B, C, T_i, H, W) maps for clips, (B, C, H, W) for images;
                'NLC': (B, T_i, L, C) tokens for clips, (B, L, C) for images. T_i is the
                number of frames block i sees.
            intermediates_only: Only return the intermediates.
        """
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x, (height, width), is_image, block_args = self._embed(x)
        num_blocks = max_index + 1 if stop_early else None
        x, intermediates = self._forward_blocks(x, (height, width), take_indices, num_blocks, block_args)

        if norm:
            intermediates = [self.norm(y) for y in intermediates]
        p = self.num_prefix_tokens
        prefix_tokens = [y[:, :, :p] for y in intermediates]
        intermediates = [y[:, :, p:] for y in intermediates]
        if output_fmt == 'NCHW':
            intermediates = [rearrange(y, 'b t (h w) c -> b c t h w', h=height, w=width) for y in intermediates]
        if is_image:
            time_dim = 2 if output_fmt == 'NCHW' else 1
            intermediates = [y.squeeze(time_dim) for y in intermediates]
            prefix_tokens = [y.squeeze(1) for y in prefix_tokens]
        if return_prefix_tokens and p:
            intermediates = list(zip(intermediates, prefix_tokens))
        if intermediates_only:
            return intermediates
        x = self.norm(x)
        return (x.squeeze(1) if is_image else x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices = super().prune_intermediate_layers(indices, prune_norm, prune_head)
        for key in [k for k in self.inti if int(k) >= len(self.blocks)]:
            del self.inti[key]  # merges after the last kept block feed nothing
        if self.adapters is not None:
            self.adapters = self.adapters[:len(self.blocks)]
        return take_indices


class VideoVisionTransformer(VideoTransformerMixin, VisionTransformer):
    """ A per-frame timm ``VisionTransformer`` (CLIP, SigLIP, DINOv2, AugReg) for clips (B, C, T, H, W), with InTI.

    Arguments: those of timm's ``VisionTransformer`` plus the video ones of ``VideoTransformerMixin``.
    """
    image_checkpoint_filter = staticmethod(_vit_checkpoint_filter_fn)

    def _embed_frames(self, x: torch.Tensor, batch: int) -> Tuple[torch.Tensor, None]:
        x = self._pos_embed(self.patch_embed(x))  # timm: prefix tokens + spatial position embedding
        x = rearrange(x, '(b t) n d -> b t n d', b=batch)
        x = x + self._temporal_embed(x.shape[1])
        x = self.patch_drop(x)
        return self.norm_pre(x), None

    def _run_block(self, index: int, x: torch.Tensor, block_args: None) -> torch.Tensor:
        return self.blocks[index](x)


class VideoEva(VideoTransformerMixin, Eva):
    """ A per-frame timm ``Eva`` (Perception Encoder, DINOv3, EVA02) for clips (B, C, T, H, W), with InTI.

    Every frame's patch grid gets the same 2-D rotary embedding, computed once per forward pass; the
    class token and registers are handled as in ``VideoVisionTransformer``, and an attention pool (PE)
    pools every frame before the frames are averaged. Arguments: those of timm's ``Eva`` plus the
    video ones of ``VideoTransformerMixin``. timm's ``attn_mask`` / ``is_causal`` are not supported.
    """
    image_checkpoint_filter = staticmethod(_eva_checkpoint_filter_fn)

    def _embed_frames(self, x: torch.Tensor, batch: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, rope = self._pos_embed(self.patch_embed(x))  # timm: prefix tokens, position embeddings, rope
        x = rearrange(x, '(b t) n d -> b t n d', b=batch)
        x = x + self._temporal_embed(x.shape[1])
        return self.norm_pre(x), rope

    def _run_block(self, index: int, x: torch.Tensor, block_args: Optional[torch.Tensor]) -> torch.Tensor:
        rope = block_args
        if rope is not None and self.rope_mixed:
            rope = rope[index]  # one rotary embedding per block
        return self.blocks[index](x, rope=rope)


def _weights_source(pretrained_cfg: Dict[str, Any]) -> str:
    """Where timm loads pretrained weights from, for error messages (order as timm resolves it)."""
    if pretrained_cfg.get('source') == 'hf-hub' and pretrained_cfg.get('hf_hub_id'):
        return f"hf-hub:{pretrained_cfg['hf_hub_id']}"
    if pretrained_cfg.get('file'):
        return str(pretrained_cfg['file'])
    if pretrained_cfg.get('state_dict') is not None:
        return 'the state_dict in pretrained_cfg'
    if pretrained_cfg.get('hf_hub_id'):
        return f"hf-hub:{pretrained_cfg['hf_hub_id']}"
    return pretrained_cfg.get('url') or 'the checkpoint'


def _check_weights_file(pretrained_cfg: Dict[str, Any]) -> None:
    """Refuse a pretrained ``file`` that timm's loader would fail on with no reason: missing, a folder, empty, or
    neither safetensors nor a PyTorch file."""
    load_from, location = _resolve_pretrained_source(pretrained_cfg)
    if load_from != 'file':
        return
    path, reason = Path(location), None
    if not path.exists():
        reason = 'no such file'
    elif not path.is_file():
        reason = 'not a file'
    elif path.stat().st_size == 0:
        reason = 'the file is empty, 0 bytes'
    elif path.suffix != '.safetensors':
        with open(path, 'rb') as f:
            head = f.read(2)
        if head != b'PK' and head[:1] != b'\x80':  # torch.save's zip archive; a pickle's PROTO opcode
            reason = 'neither safetensors nor a PyTorch file'
    if reason:
        raise CheckpointError(f'{path}: cannot read the pretrained weights ({reason})')


OFFLINE_DOC = 'docs/offline.md'  # how to work from local files, named by the loading errors


def hub_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or an error that caused it) says that a file is not in the Hugging Face cache and the
    Hub cannot be reached (``HF_HUB_OFFLINE=1``, no network): what a local copy of the weights fixes."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)) or \
                'cannot find the requested files in the local cache' in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def load_failure_reason(error: BaseException) -> Tuple[str, bool]:
    """A weights reader's error as a short reason, and whether the file is a real pickle holding Python objects.

    torch's refusal under ``weights_only=True`` advises retrying with ``weights_only=False``,
    which would run the file's pickle: never passed on. A file of other bytes (random, another
    format) is "not a PyTorch weights file"; a pickle that holds objects besides tensors names them.
    """
    text = str(error).strip()
    if 'weights_only' not in text:
        return (text.splitlines()[0] if text else type(error).__name__), False
    found = re.search(r'Unsupported global: GLOBAL (\S+)', text)
    if found:
        return f'it holds a {found.group(1)} besides tensors, which a safe load refuses', True
    detail = re.search(r'WeightsUnpickler error:\s*(.+)', text)
    return 'not a PyTorch weights file' + (f' ({detail.group(1).strip()})' if detail else ''), False


def _read_failure(pretrained_cfg: Dict[str, Any], error: BaseException) -> CheckpointError:
    """A loader's error as one line naming the source, without torch's advice to unpickle an untrusted file."""
    reason, _ = load_failure_reason(error)
    remedy = (f'; without the Hub, load a local copy: pretrained_cfg_overlay=dict(file=PATH), or a local-dir:DIR '
              f'name (see {OFFLINE_DOC})') if hub_unreachable(error) else ''
    return CheckpointError(
        f'{_weights_source(pretrained_cfg)}: cannot read the pretrained weights ({reason}){remedy}')


def check_local_dir(folder: Union[str, Path]) -> Path:
    """Refuse a ``local-dir:`` folder whose config.json timm would fail on deep inside, naming the file."""
    folder = Path(folder)
    config = folder / 'config.json'
    if not folder.is_dir():
        raise CheckpointError(f'local-dir:{folder}: no such folder')
    if not config.is_file():
        raise CheckpointError(f'{config}: no such file; a local-dir: folder holds config.json and the weights '
                              f'(as save_pretrained writes them)')
    try:
        data = json.loads(config.read_text(encoding='utf-8'))
    except UnicodeDecodeError as e:
        raise CheckpointError(f'{config}: not a text file ({e.reason} at byte {e.start})') from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f'{config}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})') from e
    if not isinstance(data, dict) or not isinstance(data.get('architecture'), str):
        raise CheckpointError(f'{config}: not a timm model config (no "architecture" naming a timm model)')
    if not is_model(data['architecture']):
        raise CheckpointError(f'{config}: architecture {data["architecture"]!r} is not a registered timm model')
    for key in ('model_args', 'pretrained_cfg'):
        if key in data and not isinstance(data[key], dict):
            raise CheckpointError(f'{config}: "{key}" must be an object, got {type(data[key]).__name__}')
    return config


def _key_list(keys: List[str], limit: int = 8) -> str:
    more = f' and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def _check_fits(state_dict: Dict[str, torch.Tensor], model: VideoTransformerMixin) -> None:
    """Refuse a converted checkpoint that would load partially, naming the source and the keys."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    expected = model.state_dict()
    # timm's load_pretrained drops the classifier when the class count differs, and adapts the
    # first conv to other channel counts; those keys may differ here
    classifiers = cfg.get('classifier') or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else classifiers
    new_head = model.num_classes != cfg.get('num_classes', model.num_classes)
    skip = {f'{c}.{p}' for c in classifiers for p in ('weight', 'bias')} if new_head else set()
    first_conv = f"{cfg.get('first_conv') or 'patch_embed.proj'}.weight"

    missing = [k for k in expected if k not in state_dict and k not in skip]
    unexpected = [k for k in state_dict if k not in expected and k not in skip]
    mismatched = []
    for k, v in state_dict.items():
        if k not in expected or k in skip or v.shape == expected[k].shape:
            continue
        if (k == first_conv and v.ndim == 4 and v.shape[0] == expected[k].shape[0]
                and v.shape[2:] == expected[k].shape[2:]):
            continue  # other input channels: adapted by timm's load_pretrained
        mismatched.append(f'{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}')
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f'missing keys: {_key_list(missing)}')
        if unexpected:
            problems.append(f'unexpected keys: {_key_list(unexpected)}')
        if mismatched:
            problems.append(f'shape mismatches (checkpoint vs model): {_key_list(mismatched)}')
        arch = cfg.get('architecture') or type(model).__name__
        raise CheckpointError(f'{_weights_source(cfg)} does not fit {arch}: ' + '; '.join(problems))


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: VideoTransformerMixin) -> Dict[str, torch.Tensor]:
    """Map a checkpoint onto a video model, refusing anything that would load partially.

    Accepts an image tower in any format timm's filter of the image class reads (ViT: timm, OpenAI
    or open_clip CLIP; Eva: timm, open_clip, Meta's PE and DINOv3 releases; the filter also resamples
    position and patch embeddings), or a video checkpoint of this model family (its temporal
    embedding is resampled to ``model.num_frames``).
    An image tower leaves the InTI layers at their averaging init and the temporal
    embedding at zero.
    """
    state_dict = model.image_checkpoint_filter(state_dict, model)
    if 'temporal_embed' in state_dict:
        state_dict['temporal_embed'] = resample_temporal_embed(state_dict['temporal_embed'], model.num_frames)
    else:
        for k, v in model.state_dict().items():
            if k.startswith(model.video_only_prefixes):
                state_dict[k] = v
    _check_fits(state_dict, model)
    _record_origin(model)
    return state_dict


def _record_origin(model: nn.Module) -> None:
    """After image weights load from the Hub under a pretrained tag, record where they came from.

    timm's cfg field ``origin_url`` (the Hub page of the image weights) is what ``config.json`` carries,
    so the model cards of this model and of models saved from it name their tower and licence
    (``timm_inti.hub.initialised_from``); weights from a file or a state dict record nothing.
    """
    cfg = getattr(model, 'pretrained_cfg', None)
    if isinstance(cfg, dict) and _weights_source(cfg).startswith('hf-hub:') and not cfg.get('origin_url'):
        cfg['origin_url'] = f"https://huggingface.co/{cfg['hf_hub_id']}"


# the video class of each timm image class (the backbone table names the image class)
VIDEO_CLASSES: Dict[type, type] = {VisionTransformer: VideoVisionTransformer, Eva: VideoEva}
_VIDEO_CLASS_BY_NAME = {image_cls.__name__: video_cls for image_cls, video_cls in VIDEO_CLASSES.items()}


def _create_inti_vit(variant: str, pretrained: bool = False, **kwargs) -> VideoTransformerMixin:
    out_indices = kwargs.pop('out_indices', 3)
    cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
    found = find_backbone(variant)
    model_cls = _VIDEO_CLASS_BY_NAME[found[0].model_class] if found is not None else VideoVisionTransformer
    if 'act_layer' not in kwargs and found is not None:
        # the activation follows the weights a tag loads, not the architecture name
        act_layer = found[0].weights(cfg.tag).act_layer
        if act_layer is not None:
            kwargs['act_layer'] = act_layer
    if pretrained:
        _check_weights_file(cfg.to_dict())
    try:
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
            **kwargs,
        )
    except (SafetensorError, pickle.UnpicklingError, EOFError, OSError, RuntimeError) as e:
        if not pretrained:
            raise
        raise _read_failure(cfg.to_dict(), e) from e  # timm's readers say what broke but not in which file
    if isinstance(kwargs.get('act_layer'), str):
        update_model_args(model, act_layer=kwargs['act_layer'])  # saved configs rebuild the same activation
    return model


# The generic path: any timm VisionTransformer or Eva checkpoint as a video model

# what the video classes replace; a subclass of timm's ViT or Eva that overrides one of these
# computes something the video model would silently drop
_VIDEO_METHODS = ('forward', 'forward_features', 'forward_head', 'forward_intermediates', 'prune_intermediate_layers')


def _video_class(cls: type, model_name: str) -> type:
    """The video class for timm image class ``cls``, or a TypeError naming the supported classes."""
    if issubclass(cls, VideoTransformerMixin):
        return cls
    if cls in VIDEO_CLASSES:
        return VIDEO_CLASSES[cls]
    base = next((b for b in VIDEO_CLASSES if issubclass(cls, b)), None)
    overridden = [m for m in _VIDEO_METHODS if base is not None and getattr(cls, m) is not getattr(base, m)]
    if base is None or overridden:
        why = f'overrides {", ".join(overridden)}' if overridden else 'is neither a timm VisionTransformer nor Eva'
        raise TypeError(
            f'{model_name} is a {cls.__module__}.{cls.__name__}, which {why}: timm_inti turns models of class '
            f'timm.models.vision_transformer.VisionTransformer or timm.models.eva.Eva (or a subclass that keeps '
            f'their forward methods) into video models; other classes are not supported')
    return type(f'Video{cls.__name__}', (VIDEO_CLASSES[base], cls), {'__module__': cls.__module__})


def create_video_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> VideoTransformerMixin:
    """Any timm ViT as a video model with InTI, with its own pretrained weights and cfg.

    ``model_name`` is what ``timm.create_model`` takes: a registered InTI model
    (``"inti_vit_b16.laion2b"``), or any timm model of class ``VisionTransformer`` or ``Eva`` with an
    optional tag (``"vit_base_patch16_siglip_224.v2_webli"``, ``"vit_pe_core_large_patch14_336.fb"``),
    or ``hf-hub:`` / ``local-dir:`` names of either, including video models saved by
    ``timm_inti.save_pretrained``.

    timm builds the image model with its own arguments and pretrained cfg (mean, std, size,
    pooling, head); the video parts are added (timm's ViT class becomes ``VideoVisionTransformer``, its
    Eva class ``VideoEva``, ToMe-style), and ``pretrained=True`` loads the weights through timm's loader and
    this module's checkpoint filter, so image towers and video checkpoints both load, and partial loads are
    refused.

    Args:
        pretrained: Load the weights of the cfg (the tag's Hub repository, or ``pretrained_cfg_overlay``'s file).
        **kwargs: The video arguments of ``VideoTransformerMixin`` (``num_frames``, ``inti_after``
            (default: one InTI layer after a quarter of the blocks), ``inti_*``, ``adapter_*``); the
            rest go to ``timm.create_model`` (``num_classes``, ``img_size``, ``pretrained_cfg_overlay``, ...).
    """
    import timm
    from timm.models._factory import parse_model_name
    from timm.models._hub import load_model_config_from_hf, load_model_config_from_path
    from timm.models._registry import split_model_name_tag

    source, model_id = parse_model_name(model_name)
    pretrained_cfg, saved_args = None, {}
    if source == 'hf-hub':
        pretrained_cfg, arch, saved_args = load_model_config_from_hf(model_id)
    elif source == 'local-dir':
        check_local_dir(model_id)
        pretrained_cfg, arch, saved_args = load_model_config_from_path(model_id)
    else:
        arch = split_model_name_tag(model_id)[0]
    if find_backbone(arch) is not None:  # registered: timm builds it with its InTI schedule
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    if kwargs.get('features_only'):
        raise ValueError(
            f'features_only is for the registered InTI models; for {model_name} use '
            f'model.forward_intermediates(clip), which returns the same maps')

    saved_args = saved_args or {}
    video_kwargs = {k: saved_args[k] for k in VIDEO_KWARGS if k in saved_args}
    video_kwargs.update({k: kwargs.pop(k) for k in VIDEO_KWARGS if k in kwargs})
    if source:
        # timm would hand the saved video arguments to the image class: build from the saved cfg instead
        image_args = {k: v for k, v in saved_args.items() if k not in VIDEO_KWARGS}
        model = timm.create_model(arch, pretrained=False, pretrained_cfg=pretrained_cfg, **dict(image_args, **kwargs))
    else:
        model = timm.create_model(model_name, pretrained=False, **kwargs)
    model.__class__ = _video_class(type(model), model_name)
    if not source:
        # timm's cfgs may name an origin of their own; the card's origin is recorded when weights load
        model.pretrained_cfg.pop('origin_url', None)
    param = next(model.parameters())
    video_kwargs.setdefault('inti_after', quarter_schedule(len(model.blocks)))
    patch_drop = getattr(model, 'patch_drop', None)
    model._init_video_parts(
        VideoCfg(**video_kwargs), patch_drop_rate=float(getattr(patch_drop, 'prob', 0.) or 0.),
        device=param.device, dtype=param.dtype)
    update_model_args(model, **{k: list(v) if isinstance(v, tuple) else v for k, v in video_kwargs.items()})
    if pretrained:
        cfg = model.pretrained_cfg
        _check_weights_file(cfg)
        try:
            load_pretrained(
                model, pretrained_cfg=cfg, num_classes=model.num_classes, in_chans=model.in_chans,
                filter_fn=checkpoint_filter_fn)
        except (SafetensorError, pickle.UnpicklingError, EOFError, OSError, RuntimeError) as e:
            raise _read_failure(cfg, e) from e
    return model


# Registrations, generated from the backbone table (timm_inti.backbones): for every backbone and
# variant an entrypoint under the timm-style long name and one under the short alias, each with
# a pretrained cfg per tag (the first tag is the default). The weights are CLIP (or other) image
# towers that timm publishes on the Hub: InTI layers and temporal embeddings start at their init.

def _pretrained_cfg(backbone: Backbone, weights: Weights) -> Dict[str, Any]:
    return {
        'hf_hub_id': weights.hf_hub_id,
        'num_classes': weights.num_classes,
        'input_size': (3, backbone.img_size, backbone.img_size),
        'pool_size': None,
        'crop_pct': weights.crop_pct,
        'interpolation': 'bicubic',
        'fixed_input_size': True,
        'mean': weights.mean,
        'std': weights.std,
        'first_conv': 'patch_embed.proj',
        'classifier': 'head',
        'license': weights.license,
        'paper_ids': 'arXiv:2408.06840',
        'paper_name': 'Dynamic and Compressive Adaptation of Transformers From Images to Videos',
    }


def _describe(backbone: Backbone, variant: str) -> str:
    args = backbone.model_args(variant)
    inti_after, depth = args['inti_after'], backbone.depth
    if variant == '_deep':
        return f'{backbone.description}, InTI after every quarter of the blocks {inti_after} of {depth}.'
    text = f'{backbone.description}, one InTI layer after {inti_after[0]} of {depth} blocks'
    if args.get('adapter_dim'):
        text += f", and a spatio-temporal adapter (width {args['adapter_dim']}) before every block"
    return text + '.'


def _entrypoint(name: str, backbone: Backbone, variant: str, doc: str):
    """A real module-level entrypoint function, as timm's registry needs (it looks up this module's default_cfgs)."""
    def entrypoint(pretrained: bool = False, **kwargs) -> VideoTransformerMixin:
        return _create_inti_vit(name, pretrained=pretrained, **dict(backbone.model_args(variant), **kwargs))
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = doc
    return entrypoint


MODEL_ALIASES: Dict[str, str] = {}  # short name users type -> timm-style long name
default_cfgs: Dict[str, Any] = {}


def register_backbone(backbone: Backbone) -> List[str]:
    """Register the InTI models of ``backbone`` (all variants, long names and aliases) with timm.

    The backbone joins ``timm_inti.backbones.BACKBONES``, so its activation per tag and its text
    towers are found like those of the built-in ones. Returns the registered names.
    """
    if not backbone.tags:
        raise ValueError(f'backbone {backbone.name!r} has no pretrained tags; give at least one Weights entry')
    BACKBONES[backbone.name] = backbone
    names = []
    for long_name, alias, variant in backbone.model_names():
        default_cfgs.update(generate_default_cfgs({
            f'{name}.{tag}': _pretrained_cfg(backbone, weights)
            for name in (long_name, alias) for tag, weights in backbone.tags.items()
        }))
        for name, doc in ((long_name, _describe(backbone, variant)), (alias, f'Short name of {long_name}.')):
            fn = _entrypoint(name, backbone, variant, doc)
            globals()[name] = fn  # importable as timm_inti.vit.<name>, like a hand-written entrypoint
            register_model(fn)
            names.append(name)
        MODEL_ALIASES[alias] = long_name
    return names


for _backbone in list(BACKBONES.values()):
    register_backbone(_backbone)
