"""Publish a save_pretrained folder to the Hugging Face Hub.

    python weights/publish.py inti-k400 --repo-id my-org/inti-vit-b16-k400
    python weights/publish.py inti-k400 --repo-id my-org/inti-vit-b16-k400 --dry-run

Before uploading it rebuilds the model from the folder (``local-dir:``), so nothing that
cannot be loaded back is published. The token comes from ``HF_TOKEN`` or
``huggingface-cli login``, as huggingface_hub reads it.
"""
import argparse
import sys
from pathlib import Path

from timm_inti import CheckpointError
from timm_inti.checkpoints import create_model
from timm_inti.cli import UsageError, add_debug_argument, command
from timm_inti.hub import publish_folder


@command('publish.py')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='publish.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('folder', type=Path, help='a folder written by save_pretrained / export.py / convert.py')
    parser.add_argument('--repo-id', required=True, help='org/name on the Hub')
    parser.add_argument('--private', action='store_true')
    parser.add_argument('--message', default='Add InTI video model', help='commit message')
    parser.add_argument('--dry-run', action='store_true', help='check the folder, upload nothing')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    try:  # the Hub's own rule, checked before anything is built or uploaded (--dry-run too)
        validate_repo_id(args.repo_id)
        if args.repo_id.count('/') != 1:
            raise HFValidationError('a repository id is ORG/NAME (or USER/NAME)')
    except HFValidationError as e:
        raise UsageError(f'--repo-id {args.repo_id!r} is not a repository id the Hub accepts: {e}') from e
    try:
        model = create_model(f'local-dir:{args.folder}', pretrained=True)
    except (CheckpointError, OSError, RuntimeError) as e:
        raise CheckpointError(f'{args.folder} does not load back, nothing published: {e}') from e
    files = sorted(p.name for p in args.folder.iterdir() if not p.name.startswith('.'))
    print(f'{args.folder}: {model.pretrained_cfg.get("architecture")}, {model.num_classes} classes; '
          f'files: {", ".join(files)}')
    if args.dry_run:
        print(f'dry run: would upload to {args.repo_id}')
        return 0
    print(publish_folder(args.folder, args.repo_id, private=args.private, commit_message=args.message))
    return 0


if __name__ == '__main__':
    sys.exit(main())
