"""What users leave in their homes: SSH keys, shell history, cloud CLI credentials."""

from __future__ import annotations

from typing import Iterator

from azprov.checks.accounts import User, users
from azprov.checks.model import Note, check, unreadable
from azprov.checks.sshd import effective_config
from azprov.checks.tree import Tree

# cloud-init's root stub: a key line that only prints where to log in instead.
_ROOT_STUB = "command=\"echo 'Please login as the user"


def homes(tree: Tree) -> dict[str, list[User]]:
    """Each home that is a directory, with the passwd entries naming it (home/* and
    root that passwd does not name too). A home is looked at once, however many
    passwd lines name it."""

    def find() -> dict[str, list[User]]:
        found: dict[str, list[User]] = {}
        for user in users(tree):
            if user.home and user.home != "nonexistent":
                found.setdefault(user.home, []).append(user)
        for home in ["root", *tree.glob("home/*")]:
            if home not in found:
                found[home] = [User(home.rsplit("/", 1)[-1], -1, home, "/bin/sh")]
        directories = _directories(tree, list(found))
        return {home: named for home, named in found.items() if home in directories}

    return tree.memo("homes", find)


def _directories(tree: Tree, paths: list[str]) -> set[str]:
    """Those of `paths` that are directories. A path its parent's listing does not
    name is not looked up: passwd may name thousands of homes that are not there
    (each listing is made once, each lookup walks the whole path)."""
    listings: dict[str, set[str]] = {}
    found = set()
    for path in paths:
        parent, _, name = path.rpartition("/")
        if name not in ("", ".", ".."):
            if parent not in listings:
                listings[parent] = set(tree.listdir(parent))
            if name not in listings[parent]:
                continue
        if tree.is_dir(path):
            found.add(path)
    return found


def _key_lines(tree: Tree, path: str) -> list[str]:
    return [
        line
        for line in tree.lines(path)
        if line.strip() and not line.lstrip().startswith("#") and _ROOT_STUB not in line
    ]


def _authorized_files(tree: Tree, user: User, home: str) -> list[str]:
    config = effective_config(tree) or {}
    setting = config.get("authorizedkeysfile")
    patterns = (
        setting.value.split() if setting else [".ssh/authorized_keys", ".ssh/authorized_keys2"]
    )
    files = {f"{home}/.ssh/authorized_keys", f"{home}/.ssh/authorized_keys2"}
    for pattern in patterns:
        if pattern.lower() == "none":
            continue
        path = pattern.replace("%%", "\0").replace("%h", "/" + home).replace("%u", user.name)
        path = path.replace("\0", "%")
        files.add(path.lstrip("/") if path.startswith("/") else f"{home}/{path}")
    return sorted(files)


@check(
    "authorized-keys",
    "error",
    consequence="a key left behind lets its owner into every VM made from the image",
    source="LISA verify_no_pre_exist_users; virt-sysprep ssh-userdir",
)
def authorized_keys(tree: Tree) -> Iterator[Note]:
    yield from unreadable(tree, "etc/passwd")  # homes not named in passwd are still looked at
    seen: set[str] = set()
    for home, named in homes(tree).items():
        if not any(user.can_log_in for user in named):
            continue
        for user in (user for user in named if user.can_log_in):
            for path in _authorized_files(tree, user, home):
                keys = [] if path in seen else _key_lines(tree, path)
                seen.add(path)
                if keys:
                    comment = keys[0].split()[-1] if len(keys[0].split()) > 2 else "no comment"
                    yield Note(path, f"holds {len(keys)} key(s) ({comment})", f"remove {path}")
        for path in tree.glob(f"{home}/.ssh/id_*"):
            if not path.endswith(".pub"):
                yield Note(path, "is a private key", f"remove {path}")
        if tree.size(f"{home}/.ssh/known_hosts"):
            yield Note(
                f"{home}/.ssh/known_hosts",
                "exists",
                "remove it",
                severity="info",
                consequence="shows where the build connected to",
            )


_HISTORIES = (".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history")
_OTHER_HISTORIES = (".python_history", ".mysql_history", ".psql_history", ".lesshst", ".viminfo")


# Caches and toolchains hold no shell history but can hold 100,000s of files.
_BULK_DIRS = frozenset({".cache", ".pyenv", ".rustup", ".cargo", ".npm", "node_modules", ".git"})


def _history_files(tree: Tree, home: str) -> Iterator[str]:
    """`.*sh_history` and `.history` anywhere under the home (as LISA searches)."""
    # Only real homes are searched deep: a system account's "home" can be / or /bin.
    if not (home == "root" or home.startswith("home/")):
        return
    for path in tree.walk(home, skip=_BULK_DIRS):
        name = path.rsplit("/", 1)[-1]
        if name.endswith("sh_history") or name == ".history":
            yield path


@check(
    "shell-history",
    "error",
    consequence="typed passwords and tokens ship with the image",
    source="LISA verify_bash_history_is_empty; virt-sysprep bash-history, zsh-history",
)
def shell_history(tree: Tree) -> Iterator[Note]:
    yield from unreadable(tree, "etc/passwd")
    for home, named in homes(tree).items():
        shells = any(user.shell.endswith("sh") for user in named)
        if shells or home == "root" or home.startswith("home/"):
            found = set(_history_files(tree, home)) | {f"{home}/{h}" for h in _HISTORIES}
            for path in sorted(found):
                if tree.size(path):
                    yield Note(path, f"holds {len(tree.lines(path))} line(s)", f"remove {path}")
        for name in _OTHER_HISTORIES:
            path = f"{home}/{name}"
            if tree.size(path):
                yield Note(path, "exists", f"remove {path}", severity="warn")


_CREDENTIALS = (
    ".azure/msal_token_cache.json",
    ".azure/service_principal_entries.json",
    ".azure/accessTokens.json",
    ".aws/credentials",
    ".config/gcloud/credentials.db",
    ".config/gcloud/application_default_credentials.json",
    ".docker/config.json",
    ".kube/config",
    ".git-credentials",
    ".netrc",
)


@check(
    "cloud-cli-credentials",
    "error",
    consequence="the build pipeline's cloud login works from every clone",
    source="Azure CLI MSAL token cache docs",
)
def cloud_cli_credentials(tree: Tree) -> Iterator[Note]:
    for home in homes(tree):
        for name in _CREDENTIALS:
            path = f"{home}/{name}"
            if tree.size(path):
                yield Note(path, "exists", f"remove {path} (log out first)")
        keys = tree.glob(f"{home}/.gnupg/private-keys-v1.d/*")
        if keys:
            yield Note(
                f"{home}/.gnupg/private-keys-v1.d", f"holds {len(keys)} key(s)", "remove them"
            )
