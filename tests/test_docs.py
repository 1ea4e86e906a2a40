"""The README and docs/ pages: every relative link resolves, to a file and, for a page, to a heading."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'^```.*?^```', re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page: Path) -> set:
    text = FENCE.sub('', page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r'^#{1,6} (.+)$', text, re.M)}


def links(page: Path):
    text = FENCE.sub('', page.read_text())
    for target in LINK.findall(text):
        if not re.match(r'[a-z]+:', target):  # http(s):, mailto: are not checked here
            yield target


def test_slug_follows_githubs_rule():
    assert slug('Repeated sampling: `--num-samples K`') == 'repeated-sampling---num-samples-k'
    assert slug('Any timm ViT as a video model') == 'any-timm-vit-as-a-video-model'


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition('#')
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f'{target} (no such file)')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            broken.append(f'{target} (no heading #{anchor} in {dest.relative_to(ROOT)})')
    assert not broken, f'{page.relative_to(ROOT)}: ' + ', '.join(broken)


def test_readme_is_a_front_page():
    lines = (ROOT / 'README.md').read_text().splitlines()
    assert len(lines) <= 320
    # the two commands a new user runs come first, and .ci/run runs exactly them
    commands = lines[3:5]
    assert commands == ['pip install -e ".[all]" && python benchmarks/flops.py',
                        'pip install -e ".[test]" && python -m pytest']
    ci = (ROOT / '.ci' / 'run').read_text()
    assert all(command in ci for command in commands)
