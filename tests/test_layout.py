"""The package's import graph: no circle (late imports inside functions included), and models never import the
data, training or command code."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import timm_inti

PACKAGE = Path(timm_inti.__file__).parent
MODELS = {'timm_inti.inti', 'timm_inti.temporal', 'timm_inti.video_cfg', 'timm_inti.backbones', 'timm_inti.vit',
          'timm_inti.flops'}
ABOVE_MODELS = ('timm_inti.video', 'timm_inti.train', 'timm_inti.predict', 'timm_inti.prepare', 'timm_inti.export',
                'timm_inti.outputs', 'timm_inti.inference', 'timm_inti.evaluate')


def _modules() -> Dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob('*.py'):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        modules['.'.join(parts)] = path
    return modules


def import_graph() -> Dict[str, Set[str]]:
    """{module: the package's modules it imports anywhere in its file (at the top or inside a function)}."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parts = package.split('.')
                    base = '.'.join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [base] + [f'{base}.{a.name}' for a in node.names]  # `from . import x`: module x
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import circles of ``graph`` (each once, as a path that returns to its start)."""
    found, done = [], set()

    def visit(node: str, path: List[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, path + [node])
        done.add(node)
    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_walk_finds_a_circle_when_there_is_one():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c', 'a']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
    graph = import_graph()
    assert 'timm_inti.video.datasets' in graph['timm_inti.video'], 'the walk sees the package imports'
    assert 'timm_inti.hub' in graph['timm_inti.zero_shot'], 'and the late ones inside functions'


def test_no_import_circle_in_the_package():
    graph = import_graph()
    # the package's __init__ is imported by every module of it, so an import of `timm_inti` itself closes no circle
    graph = {name: targets - {'timm_inti'} for name, targets in graph.items()}
    assert cycles(graph) == []


def test_models_do_not_import_data_training_or_commands():
    graph = import_graph()
    for model in MODELS:
        wrong = sorted(t for t in graph[model] if any(t == a or t.startswith(a + '.') for a in ABOVE_MODELS))
        assert not wrong, f'{model} imports {wrong}'
