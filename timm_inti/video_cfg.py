""" The video options of an InTI model, as one dataclass (timm's ``NaFlexVitCfg`` does this for NaFlexViT)

``VideoCfg`` holds the names, the defaults and the checks of the options a video model adds to
its timm image class. The model classes take them as flat kwargs (``timm.create_model(name,
num_frames=16, inti_after=(3,))``; saved configs and training checkpoints store them so) and
gather them here; ``timm_inti.backbones`` writes its variants as ``VideoCfg`` entries.

This module imports nothing else of the package, nor torch.
"""
import operator
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ['VideoCfg', 'VIDEO_KWARGS', 'quarter_schedule']


def quarter_schedule(depth: int) -> Tuple[int, ...]:
    """One InTI layer after a quarter of the blocks: the registered models' schedule, and create_video_model's."""
    return (max(depth // 4, 1),)


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    """An integer argument (bools, floats and strings refused) of at least ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, '__index__'):
        raise ValueError(f'{name} must be an integer of at least {minimum}, got {value!r} ({type(value).__name__})')
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f'{name} must be an integer of at least {minimum}, got {value}')
    return value


def _check_schedule(inti_after: Any, depth: int) -> Tuple[int, ...]:
    """``inti_after`` as a tuple of distinct, increasing block counts in [1, depth], or a ValueError saying why not."""
    allowed = (f'a sequence of distinct, increasing integer block counts between 1 and depth={depth}, '
               f'e.g. {quarter_schedule(depth)}')
    if isinstance(inti_after, (str, bytes)) or not isinstance(inti_after, Sequence):
        raise ValueError(f'inti_after must be {allowed}; got {inti_after!r} ({type(inti_after).__name__})')
    bad = [k for k in inti_after if isinstance(k, bool) or not hasattr(k, '__index__')]
    if bad:
        raise ValueError(f'inti_after must be {allowed}; got {tuple(inti_after)!r}, where {bad[0]!r} is not an integer')
    schedule = tuple(int(k) for k in inti_after)
    if any(k < 1 or k > depth for k in schedule) or list(schedule) != sorted(set(schedule)):
        raise ValueError(f'inti_after must be {allowed}; got {schedule}')
    return schedule


@dataclass(frozen=True)
class VideoCfg:
    """What a per-frame video transformer adds to its image class's arguments.

    Args:
        num_frames: Clip length the temporal embedding is learned for; other lengths work
            and resample it.
        inti_after: Block counts; each entry k places an InTI layer after the first k
            blocks. ``(3,)`` on a 12-block ViT: blocks 1-3 see every frame, 4-12 half.
            ``()`` is naive per-frame adaptation.
        inti_hidden_dim: Width of the InTI weight networks (None: the layer's default,
            ``max(embed_dim // 8, 16)``).
        inti_kernel_sizes: Local context windows of the InTI weight networks (odd sizes).
        inti_global_context: Add a global context scale to the InTI weight networks.
        inti_weighting: ``'softmax'`` (the method), ``'sigmoid'`` or ``'mean'`` (ablations).
        adapter_dim: Bottleneck width of a spatio-temporal adapter before every block
            (temporal modules); ``0`` for none (timm's ``create_model`` drops ``None`` kwargs).
        adapter_kernel_size: (time, height, width) kernel of the adapters' depthwise convolution.

    The InTI and adapter options are checked by the layers they build (``timm_inti.inti.InTI``,
    ``timm_inti.temporal.STAdapter``); ``checked`` checks the rest against the model's depth.
    """
    num_frames: int = 8
    inti_after: Sequence[int] = ()
    inti_hidden_dim: Optional[int] = None
    inti_kernel_sizes: Sequence[int] = (1, 3, 7)
    inti_global_context: bool = True
    inti_weighting: str = 'softmax'
    adapter_dim: int = 0
    adapter_kernel_size: Sequence[int] = (3, 1, 1)

    @classmethod
    def pop_from(cls, kwargs: Dict[str, Any]) -> 'VideoCfg':
        """The video options among ``kwargs`` (taken out of it, leaving the image class's) over the defaults."""
        return cls(**{name: kwargs.pop(name) for name in VIDEO_KWARGS if name in kwargs})

    def checked(self, depth: int) -> 'VideoCfg':
        """This cfg with ``num_frames``, ``inti_after`` and ``adapter_dim`` checked for a model of ``depth``
        blocks and made plain ints (``inti_after`` a tuple), or a ValueError saying what is allowed."""
        return replace(
            self,
            num_frames=_check_count('num_frames', self.num_frames),
            inti_after=_check_schedule(self.inti_after, depth),
            adapter_dim=_check_count('adapter_dim', self.adapter_dim, minimum=0),
        )


# the option names, as create_model, config.json and training checkpoints spell them
VIDEO_KWARGS: Tuple[str, ...] = tuple(f.name for f in fields(VideoCfg))
