"""MkDocs hook: serve the benchmark result files (outside `docs/`) as part of the site.

Pages link to them as they resolve in the repository, from `docs/` one level up
(`../benchmarks/results/sit-cpu.md`), so the links also work when the Markdown is read on
its own. The build adds every `.md` and `.png` of `benchmarks/results/` to the site at
`benchmarks/results/` and rewrites those links to point there; `--strict` then checks them
like any other link.

The README is not part of the site; the build checks that its relative links name files
that exist, so that `--strict` fails on a broken one there too.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

log = logging.getLogger("mkdocs.hooks.repo_files")

#: Repository folders mounted into the site at the same path, and the file kinds taken.
MOUNTED = {"benchmarks/results": (".md", ".png")}


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_pre_build(config):
    root = _root(config)
    readme = root / "README.md"
    for target in re.findall(r"\]\(([^)\s]+)\)", readme.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if not path or "://" in path or path.startswith("mailto:"):
            continue
        if not (root / path).exists():
            log.warning("README.md links to '%s', which does not exist in the repository", target)


def on_files(files, config):
    root = _root(config)
    for folder, suffixes in MOUNTED.items():
        for path in sorted((root / folder).iterdir()):
            if path.is_file() and path.suffix in suffixes:
                files.append(File(f"{folder}/{path.name}", src_dir=str(root), dest_dir=config.site_dir,
                                  use_directory_urls=config.use_directory_urls,
                                  inclusion=InclusionLevel.NOT_IN_NAV))  # reached by links, not the nav
    return files


def on_page_markdown(markdown, page, config, files):
    if any(page.file.src_uri.startswith(f"{folder}/") for folder in MOUNTED):
        return markdown
    depth = page.file.src_uri.count("/")
    for folder in MOUNTED:
        # From docs/<depth dirs>/page.md the repository root is depth + 1 levels up; in the
        # site, where the folder is mounted at the top, it is depth levels up.
        in_repo = "../" * (depth + 1) + folder + "/"
        in_site = "../" * depth + folder + "/"
        markdown = re.sub(r"\]\(" + re.escape(in_repo), "](" + in_site, markdown)
    return markdown


def on_serve(server, config, builder):
    for folder in MOUNTED:
        server.watch(str(_root(config) / folder))
    return server
