"""Push a prepared dataset folder or a saved model folder to the Hugging Face Hub (``blemore push``).

A folder is pushed as it is, in one commit, so that the repo mirrors it: ``load_dataset(REPO)`` and
``load_dataset(REPO, "fold2")`` give the same data as ``load_dataset(FOLDER)``, and ``from_pretrained(REPO,
trust_remote_code=True, revision=SHA)`` the same model as the folder. Files that are in the repo but no longer in the
folder are deleted in that same commit; a stale shard left behind would otherwise match a config's ``data/fold0-*``
pattern and silently add rows.

Why one commit: the large files go up first (LFS or Xet uploads, which change nothing visible in the repo), and only
the final commit call publishes them. A push that fails part-way therefore leaves the repo as it was, and running it
again finishes the job without sending the files that already arrived.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from blemore import BlemoreError

#: Weights a model folder may carry (the project saves safetensors only).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


# ---------------------------------------------------------------------------------------------------------------
# What a folder must hold before it is worth uploading
# ---------------------------------------------------------------------------------------------------------------


def folder_files(folder: Path) -> list[str]:
    """Repo paths of the files to push: everything except hidden files and folders (``.git``, ``.cache``, ...).

    ``.gitattributes`` is the one hidden file that belongs in a repo, so it is kept. A symlink among the files to push
    is refused (``BlemoreError``): what it points to may lie anywhere (a token, a key next to the folder), and
    ``push`` publishes only the folder's own files.
    """
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder):  # never descends into a linked folder
        base = Path(dirpath)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in dirnames + filenames:
            path = base / name
            relative = path.relative_to(folder).as_posix()
            if name.startswith(".") and relative != ".gitattributes":
                continue
            if path.is_symlink():
                raise BlemoreError(f"{path}: is a symlink (to {os.readlink(path)}); push uploads only the folder's "
                                   "own files, never what a link points to: put the file itself there or remove it")
            if name in filenames and path.is_file():
                paths.append(relative)
    return sorted(paths)


def _config_patterns(config: dict) -> list[str]:
    """The file patterns of one ``configs:`` entry (``data_files`` is a string, a list, or a list of splits)."""
    data_files = config.get("data_files")
    if isinstance(data_files, str):
        return [data_files]
    patterns = []
    for item in data_files or []:
        if isinstance(item, dict):
            path = item.get("path")
            patterns.extend([path] if isinstance(path, str) else path or [])
        else:
            patterns.append(item)
    return patterns


def check_dataset_folder(dataset_dir: str | os.PathLike) -> list[str]:
    """Check that ``dataset_dir`` is a complete prepared dataset and return the repo paths to push.

    Complete means: a README.md whose YAML header lists ``configs`` (what ``load_dataset`` reads on the Hub), every
    data file pattern of every config matching at least one file, and each parquet file intact (a parquet file
    starts and ends with ``PAR1``; an interrupted ``blemore prepare`` leaves one that does not).
    """
    from huggingface_hub.repocard import metadata_load

    folder = Path(dataset_dir)
    readme = folder / "README.md"
    if not folder.is_dir():
        raise BlemoreError(f"{folder}: no such dataset folder (make one with `blemore prepare RAW OUT`)")
    files = folder_files(folder)  # first: a link is refused before anything is read through it
    if not readme.is_file():
        raise BlemoreError(f"{readme}: missing; a prepared dataset folder has a README.md with its configs "
                           "(run `blemore prepare RAW OUT` again)")
    try:
        metadata = metadata_load(readme) or {}
    except Exception as error:  # yaml.YAMLError, ValueError: any unreadable header is the same problem for the user
        raise BlemoreError(f"{readme}: the YAML header cannot be read ({' '.join(str(error).split())})") from None
    configs = metadata.get("configs")
    if not isinstance(configs, list) or not configs:
        raise BlemoreError(f"{readme}: the YAML header lists no `configs`, so load_dataset could not find the data "
                           "on the Hub (run `blemore prepare RAW OUT` again)")
    for config in configs:
        name = config.get("config_name", "?") if isinstance(config, dict) else "?"
        patterns = _config_patterns(config) if isinstance(config, dict) else []
        if not patterns:
            raise BlemoreError(f"{readme}: config {name!r} names no data_files")
        for pattern in patterns:
            if not any(path.is_file() for path in folder.glob(pattern)):
                raise BlemoreError(f"{readme}: config {name!r} names {pattern!r} but no file in {folder} matches it")
    for parquet in sorted(folder.rglob("*.parquet")):
        with open(parquet, "rb") as f:
            head = f.read(4)
            f.seek(max(parquet.stat().st_size - 4, 0))
            tail = f.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            raise BlemoreError(f"{parquet}: not a complete parquet file (truncated or still being written)")
    return files


def check_model_folder(model_dir: str | os.PathLike) -> list[str]:
    """Check that ``model_dir`` is a loadable saved model and return the repo paths to push.

    It needs ``config.json`` and safetensors weights, and every module named in the config's ``auto_map`` must be
    in the folder: a missing remote-code file only shows up later, as a failed ``trust_remote_code`` load.
    """
    folder = Path(model_dir)
    files = folder_files(folder) if folder.is_dir() else []  # first: a link is refused before anything is read
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BlemoreError(f"{folder}: no config.json; push a folder written by `save_pretrained`")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise BlemoreError(f"{folder}: no model.safetensors (or sharded index); push a folder written by "
                           "`save_pretrained` with safetensors weights")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise BlemoreError(f"{config_path}: not valid JSON ({error})") from None
    auto_map = config.get("auto_map") or {}
    for auto_class, reference in auto_map.items():
        for ref in reference if isinstance(reference, list) else [reference]:
            if ref is None:
                continue
            module = ref.split("--")[-1].rsplit(".", 1)[0]  # "repo--module.Class" points at another repo's code
            if "--" not in ref and not (folder / f"{module}.py").is_file():
                raise BlemoreError(f"{config_path}: auto_map {auto_class} needs {module}.py, which is not in "
                                   f"{folder}")
    return files


def check_repo_id(repo_id: str, option: str = "REPO") -> str:
    """``repo_id`` when it is a valid Hub repo id (``name`` or ``owner/name``: letters, digits, ``-_.``), else
    ``BlemoreError`` naming ``option``; a repo id is written into cards and links, so nothing else may pass."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise BlemoreError(f"{option} {repo_id!r}: not a Hub repo id (owner/name, letters, digits, '-', '_' and "
                           "'.')") from None
    return repo_id


# ---------------------------------------------------------------------------------------------------------------
# Pushing
# ---------------------------------------------------------------------------------------------------------------


#: ``user:password@`` (or ``token@``) in a URL, and ``token=...`` style query parameters.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_QUERY_SECRETS = re.compile(r"(?i)((?:token|access_token|password|secret|key|sig|signature)=)[^&\s]+")


def redact_url(text: str) -> str:
    """``text`` with credentials embedded in URLs (``https://user:token@host``, ``?token=...``) replaced by ``***``,
    so that an error message or a log line never repeats them."""
    return _QUERY_SECRETS.sub(r"\1***", _URL_CREDENTIALS.sub("***@", str(text)))


def _describe_failure(error: BaseException) -> str:
    """One line saying what the Hub (or the network) answered."""
    from huggingface_hub.errors import HfHubHTTPError

    detail = ""
    # A failed LFS upload arrives as "Error while uploading 'path' to the Hub." with the HTTP error as its cause.
    if isinstance(error, RuntimeError) and error.__cause__ is not None:
        detail = f"{error} "
        error = error.__cause__
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        response = error.response
        message = error.server_message or response.reason_phrase or ""
        where = f"{response.request.method} {response.request.url.path}" if response.request is not None else ""
        status = response.status_code
        hint = " (log in with `hf auth login` or set HF_TOKEN)" if status in (401, 403) else ""
        text = f"{detail}HTTP {status} {where}: {message}{hint}"
    else:
        text = f"{detail}{type(error).__name__}: {error}"
    return " ".join(text.split())


def _push_folder(
    folder: Path,
    files: list[str],
    repo_id: str,
    repo_type: str,
    *,
    private: bool,
    token: str | None,
    revision: str | None,
    commit_message: str,
    endpoint: str | None,
    replacements: dict[str, bytes] | None = None,
):
    """Create the repo (and branch) if needed and commit ``files`` so the repo mirrors ``folder``, in one commit.

    ``replacements`` maps repo paths to the bytes to upload instead of the folder's file (the folder is not changed).
    """
    import httpx2
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint.rstrip("/") if endpoint else None, token=token)
    target = f"{redact_url(api.endpoint)}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    try:
        repo_id = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True).repo_id
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        remote = set(api.list_repo_files(repo_id, repo_type=repo_type, revision=revision))
        stale = sorted(remote - set(files) - {".gitattributes"})
        operations = [CommitOperationDelete(path) for path in stale]
        replacements = replacements or {}
        operations += [CommitOperationAdd(path, replacements.get(path, str(folder / path))) for path in files]
        return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type,
                                 revision=revision)
    except (HfHubHTTPError, httpx2.HTTPError, RuntimeError, OSError) as error:
        raise BlemoreError(f"pushing {folder} to {target} failed: {redact_url(_describe_failure(error))}; the repo "
                           "was left unchanged, so running the same push again retries it (uploaded files are not "
                           "sent twice)") from None
    except ValueError as error:  # refused before any upload, e.g. README metadata the Hub rejects
        raise BlemoreError(f"pushing {folder} to {target} was refused: {redact_url(' '.join(str(error).split()))}"
                           ) from None


def push_dataset(
    dataset_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
):
    """Push a prepared dataset folder (README.md with configs + data/*.parquet) to the dataset repo ``repo_id``.

    ``revision`` is a branch, created from ``main`` when missing. ``endpoint`` defaults to ``HF_ENDPOINT`` or the
    public Hub. Returns the ``huggingface_hub.CommitInfo``; its ``oid`` is the revision to pin in papers and cards.
    Raises ``BlemoreError`` with one line for an incomplete folder or a failed push.
    """
    folder = Path(dataset_dir)
    files = check_dataset_folder(folder)
    message = commit_message or f"Upload BLEMORE dataset from {folder.name}"
    card = card_for_repo((folder / "README.md").read_text(encoding="utf-8"), repo_id)
    return _push_folder(folder, files, repo_id, "dataset", private=private, token=token, revision=revision,
                        commit_message=message, endpoint=endpoint, replacements={"README.md": card.encode()})


def card_for_repo(card: str, repo_id: str) -> str:
    """The dataset card as the Hub repo should show it: its ``load_dataset`` examples name the repo, not the folder.

    The local folder keeps its card (``load_dataset("blemore")`` is right there); only the pushed copy changes.
    """
    return re.sub(r'load_dataset\("[^"]*"', f'load_dataset("{repo_id}"', card)


def push_model_folder(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
):
    """Push a saved model folder (config, safetensors weights, remote-code .py files, processor files, model card).

    Same contract as ``push_dataset``; the returned ``CommitInfo.oid`` is what a model card's usage example pins
    with ``from_pretrained(repo, trust_remote_code=True, revision=...)``.
    """
    folder = Path(model_dir)
    files = check_model_folder(folder)
    message = commit_message or f"Upload BLEMORE model from {folder.name}"
    return _push_folder(folder, files, repo_id, "model", private=private, token=token, revision=revision,
                        commit_message=message, endpoint=endpoint)


# ---------------------------------------------------------------------------------------------------------------
# Command line: blemore push DATASET_DIR REPO
# ---------------------------------------------------------------------------------------------------------------
