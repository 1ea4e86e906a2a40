"""FLOP counting: attention is counted, the closed-form model agrees with fvcore, and InTI's budget holds."""
import pytest
import timm
import torch
from conftest import TINY_KWARGS
from fvcore.nn import FlopCountAnalysis

from timm_inti.flops import count_flops, formula_flops


@pytest.mark.parametrize('kwargs, frames', [
    (dict(inti_after=()), 8),
    (dict(inti_after=(1, 3)), 7),
    (dict(inti_after=(2,), class_token=False, global_pool='avg', num_classes=10), 6),
    (dict(inti_after=(2,), img_size=(32, 48), inti_kernel_sizes=(1,), inti_global_context=False), 4),
    (dict(inti_after=(2,), inti_weighting='mean'), 4),
])
def test_formula_agrees_with_fvcore(kwargs, frames):
    model = timm.create_model('inti_vit_b16', **dict(TINY_KWARGS, **kwargs)).eval()
    x = torch.randn(1, 3, frames, *model.patch_embed.img_size)
    counted, formula = count_flops(model, x), formula_flops(model, frames)
    assert abs(formula.total - counted.total) <= 0.01 * counted.total
    assert formula.inti == counted.inti


def test_attention_is_counted():
    model = timm.create_model('inti_vit_b16', inti_after=(), **TINY_KWARGS).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    plain = FlopCountAnalysis(model, x)
    plain.unsupported_ops_warnings(False)
    plain.uncalled_modules_warnings(False)
    tokens, dim, depth = 17, 64, 4
    attention = depth * 2 * (2 * tokens * tokens * dim)  # frames x (Q K^T + attn V) per block
    assert count_flops(model, x).total - plain.total() == attention


@pytest.mark.slow
def test_b16_cost_at_8_and_16_frames():
    """Naive ViT-B/16 is ~17.58 G multiply-adds per 224x224 frame; one InTI after 3 blocks leaves <= 0.630."""
    naive = timm.create_model('inti_vit_b16', inti_after=()).eval()
    inti = timm.create_model('inti_vit_b16').eval()
    naive_8 = count_flops(naive, torch.randn(1, 3, 8, 224, 224))
    assert naive_8.gflops == pytest.approx(140.7, rel=1e-3)
    for frames in (8, 16):
        counted = count_flops(inti, torch.randn(1, 3, frames, 224, 224))
        ratio = counted.total / (naive_8.total * frames / 8)
        assert ratio <= 0.630
        assert abs((1 - ratio) - 0.375) <= 0.005  # 37.5% fewer, within half a point, InTI included
        assert 0 < counted.inti_share < 0.004
        assert formula_flops(inti, frames).total == pytest.approx(counted.total, rel=0.01)



@pytest.mark.slow
def test_benchmark_script_writes_table_csv_and_plot(tmp_path, capsys):
    """The README's main job, on two variants that share a naive baseline, at two clip lengths."""
    import csv

    from benchmarks import flops as benchmark

    models, clip_lengths = ['inti_vit_b16', 'inti_vit_b16_deep'], (4, 8)
    args = ['--models', *models, '--frames', *map(str, clip_lengths), '--out', str(tmp_path)]
    assert benchmark.main(args) == 0
    assert torch.is_grad_enabled()  # the script leaves the caller's autograd state alone
    with open(tmp_path / 'flops.csv', newline='') as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == benchmark.COLUMNS
        rows = {(r['model'], int(r['frames'])): r for r in reader}
    assert list(rows) == [(m, t) for m in models for t in clip_lengths]
    for frames in clip_lengths:
        b16, deep = ({k: float(v) for k, v in rows[m, frames].items() if k != 'model'} for m in models)
        assert b16['naive_gflops'] == deep['naive_gflops'] == pytest.approx(17.58 * frames, rel=1e-3)
        # InTI after 3 of 12 blocks halves the frames of the other 9 blocks: 37.5% of the block work;
        # the deep schedule (after 3, 6 and 9 blocks) halves them again
        assert b16['schedule_bound_pct'] == pytest.approx(37.5)
        assert deep['schedule_bound_pct'] > b16['schedule_bound_pct']
        for r in (b16, deep):
            assert r['schedule_bound_pct'] - 1 < r['reduction_pct'] < r['schedule_bound_pct']
            assert r['gflops'] == pytest.approx(r['naive_gflops'] * (1 - r['reduction_pct'] / 100), rel=1e-3)
            assert abs(r['formula_diff_pct']) <= 1.0
    table = (tmp_path / 'flops.md').read_text()
    assert table.split('\n\n')[0] in capsys.readouterr().out  # the table printed is the table written
    assert '| inti_vit_b16_deep | 8 |' in table and 'multiply-adds' in table
    assert (tmp_path / 'flops.png').stat().st_size > 0


def test_benchmark_default_run_is_the_headline_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from benchmarks import flops as benchmark

    assert benchmark.default_jobs() == [('inti_vit_b16', 8), ('inti_vit_b16_deep', 8)]
    assert benchmark.parse_args([]).out is None and benchmark.parse_args(['--all']).out == benchmark.RESULTS
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(benchmark, 'HEADLINE', (('inti_vit_b16', 2),))
    assert benchmark.main([]) == 0
    out = capsys.readouterr().out
    assert 'inti_vit_b16, 2 frames: 22.' in out and '% fewer' in out  # the headline sentence (17.58 G a frame, 37%)
    assert list(tmp_path.iterdir()) == []


def test_benchmark_all_set_sweeps_clip_b16_and_l14_and_counts_every_other_family_at_8_frames():
    from benchmarks import flops as benchmark
    from timm_inti.backbones import BACKBONES

    jobs = benchmark.default_jobs(all=True)
    assert [(m, t) for m, t in jobs if m == 'inti_vit_b16_deep'] == [('inti_vit_b16_deep', t) for t in (8, 16, 32)]
    swept = {alias for b in benchmark.SWEEP_BACKBONES for _, alias, _ in BACKBONES[b].model_names()}
    others = [(m, t) for m, t in jobs if m not in swept]
    assert others == [(f'inti_{b.alias}', 8) for b in BACKBONES.values() if b.name not in benchmark.SWEEP_BACKBONES]
    assert benchmark.default_jobs(['inti_vit_b16_siglip'], [4, 8]) == [
        ('inti_vit_b16_siglip', 4), ('inti_vit_b16_siglip', 8)]


def test_siglip_attention_pool_counted_by_both():
    """The attention-pool head runs once per remaining frame; fvcore and the closed form count the same."""
    model = timm.create_model('inti_vit_b16_siglip', inti_after=(2,), **TINY_KWARGS).eval()
    counted, formula = count_flops(model, torch.randn(1, 3, 6, 32, 32)), formula_flops(model, 6)
    assert counted.by_module['attn_pool'] == formula.by_module['attn_pool'] > 0
    one_frame = formula_flops(model, 1).by_module['attn_pool']
    assert formula.by_module['attn_pool'] == 3 * one_frame  # 6 frames merged to 3 before the head
    assert formula.total == counted.total


def test_benchmark_does_not_share_naive_counts_across_frame_sizes(monkeypatch):
    """ViT-L/14 at 224 and at 336 px print the same repr; their naive counts must not be shared."""
    from benchmarks import flops as benchmark

    counted = []

    def fake_count(model, x):  # the cache logic only; shapes decide the (closed-form) count
        counted.append(x.shape[-1])
        return formula_flops(model, x.shape[2])
    monkeypatch.setattr(benchmark, 'count_flops', fake_count)
    monkeypatch.setattr(benchmark, 'build', lambda name, **kw: timm.create_model(name, device='meta', **kw))
    cache = {}
    rows = [benchmark.measure(name, 2, cache) for name in ('inti_vit_l14', 'inti_vit_l14_336')]
    assert counted == [224, 224, 336, 336]  # two naive counts, one per frame size
    assert rows[1]['naive_gflops'] > rows[0]['naive_gflops']
    assert 37 < rows[1]['reduction_pct'] < 37.5


# -- timm's Eva class (Perception Encoder, DINOv3, EVA02-CLIP) -------------------------------------

@pytest.mark.parametrize('alias', ['inti_vit_b16_pe_temporal', 'inti_vit_s16_dinov3', 'inti_vit_b16_eva02'])
def test_formula_agrees_with_fvcore_on_eva_blocks(alias):
    """SwiGLU with its inner norm (EVA02), separate q/k/v, PE's attention pool and adapters, rope: exactly."""
    model = timm.create_model(alias, inti_after=(1, 3), **TINY_KWARGS).eval()
    for frames in (1, 5, 8):
        counted, formula = count_flops(model, torch.randn(1, 3, frames, 32, 32)), formula_flops(model, frames)
        assert formula.total == counted.total and formula.inti == counted.inti
        assert formula.by_module['blocks'] == sum(counted.by_module[f'blocks.{i}'] for i in range(4))


def test_rotary_embedding_is_counted_and_nothing_else_elementwise(monkeypatch):
    import timm_inti.flops
    model = timm.create_model('inti_vit_b16_pe', inti_after=(1, 3), **TINY_KWARGS).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    with_rope = count_flops(model, x).total
    monkeypatch.setattr(timm_inti.flops, 'rope_flop_jit', lambda inputs, outputs: 0)
    without = count_flops(model, x).total
    # blocks see 2, 1, 1, 1 frames; queries and keys of 16 patch tokens times a sine and a cosine, 64 wide
    assert with_rope - without == (2 + 1 + 1 + 1) * 2 * 2 * 16 * 64
    vit = timm.create_model('inti_vit_b16', **TINY_KWARGS).eval()  # no rope: the mul handle is not installed
    assert count_flops(vit, x).total == formula_flops(vit, 2).total


def test_eva_families_save_what_the_schedule_promises():
    """Closed form at full size (meta device): 0.60-0.64 of naive at 8 frames for every plain Eva model."""
    from timm_inti.backbones import BACKBONES
    for backbone in (b for b in BACKBONES.values() if b.model_class == 'Eva'):
        with torch.device('meta'):
            model = timm.create_model(f'inti_{backbone.alias}')
            naive = timm.create_model(f'inti_{backbone.alias}', inti_after=())
        ratio = formula_flops(model, 8).total / formula_flops(naive, 8).total
        bound = sum(model.num_frames_after(8)) / (len(model.blocks) * 8)  # 0.625: blocks only
        assert 0.60 <= ratio <= 0.64 and ratio > bound, backbone.alias
