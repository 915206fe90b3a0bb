"""Test extension packages shaped like the published ones, not like azprov's own wishes.

Every package carries the same small Python handler (`CORE_PY`); what differs
is the way the published extensions are laid out and spelled:

- `sample`: WALinuxAgent's sample extension: `sample.py -install`, a command
  with no slash, found in the handler folder only because the agent joins it;
- `access`: laid out like VMAccess: `extension_noop.sh` for install, update,
  disable and uninstall, `extension_shim.sh -c ./access.py -e` for enable (the
  shim picks the interpreter), a logger that reopens `/dev/stdout` for every
  line (truncating the file the agent handed it), and a status file with
  `"code": "0"` and `"substatus": null`;
- `shebang`: `handler.py -enable` whose shebang is relative (`#!./python.sh`);
- `script`: laid out like Custom Script: `bin/custom-script-shim enable`, a
  shell shim in a sub-folder, with the manifest itself in a sub-folder;
- `runcommand`: laid out like RunCommand v2 (Microsoft.CPlat.Core.RunCommandHandlerLinux),
  a multi-config handler: a manifest with no `name` and
  `"supportsMultipleExtensions": "true"`, `bin/run-command-shim <operation>`
  taking the extension's name from `ConfigExtensionName`, settings read from
  `config/<name>.<seqNo>.settings`, status written to `status/<name>.<seqNo>.status`,
  and its own `<name>.mrseq` and lock file kept in the handler folder; with
  `detach_enable`, enable goes on in the background as the published shim's does
  (the command returns at once, the status file comes later).

Options on any style: `bom` (a UTF-8 byte-order mark before the manifest),
`subfolder` (where the manifest sits), `reopen_stdout`, `string_code`, and
manifest overrides (`reportHeartbeat="true"`, `updateMode=…`).

The handler does what its public settings say for each operation
(`{"enable": {"exit": 2, "stdout": "…", "sleep": 1, "child": true,
"status": "error", "raw_status": "…", "heartbeat": "Ready",
"files": {"/path": "text"}, "create_user": true}}`; `create_user`, for the
emulated VM only, makes the user named in the protected settings), records each call in
`<lib_dir>/<Name>.ops.log`, decrypts its protected settings with the
`.crt`/`.prv` pair the agent wrote, and finds every folder through
`HandlerEnvironment.json`, as real handlers do.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

STYLES = ("sample", "access", "shebang", "script", "runcommand")

CORE_PY = r'''
import base64, json, os, subprocess, sys, time

OPERATIONS = {"i": "install", "e": "enable", "d": "disable", "u": "uninstall", "p": "update"}
flag = sys.argv[1].lstrip("-")
op = flag if flag in OPERATIONS.values() else OPERATIONS[flag[:1]]
here = os.path.dirname(os.path.abspath(__file__))
# The handler folder is where HandlerEnvironment.json is: next to us or one up.
folder = here if os.path.exists(os.path.join(here, "HandlerEnvironment.json")) else os.path.dirname(here)
lib_dir = os.path.dirname(folder)
with open(os.path.join(folder, "HandlerEnvironment.json")) as handle:
    document = json.load(handle)[0]
name, environment = document["name"], document["handlerEnvironment"]
options = json.load(open(os.path.join(here, "fleet-options.json")))


def log(line):
    """One line to stdout; some published loggers reopen (truncate) it every time."""
    if options["reopen_stdout"]:
        with open("/dev/stdout", "w") as out:
            out.write(line + "\n")
    else:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


seq = os.environ["ConfigSequenceNumber"]
# A multi-config handler's files carry the extension's name: <name>.<seqNo>.settings.
extension = os.environ.get("ConfigExtensionName", "")
prefix = extension + "." if extension else ""
text = open(os.path.join(environment["configFolder"], prefix + seq + ".settings")).read()
handler = json.loads(text)["runtimeSettings"][0]["handlerSettings"] if text.strip() else {}
behaviour = (handler.get("publicSettings") or {}).get(op, {})
record = {"op": op, "seq": seq, "ext": extension, "at": time.time(), "style": options["style"],
          "version": os.environ["AZURE_GUEST_AGENT_EXTENSION_VERSION"],
          "cwd": os.getcwd(), "own_group": os.getpgid(0) == os.getsid(0),
          "env": {k: v for k, v in os.environ.items() if k.startswith(("AZURE_", "VERSION", "Config"))}}
with open(os.path.join(lib_dir, name + ".ops.log"), "a") as ops:
    ops.write(json.dumps(record) + "\n")
if op == "enable" and handler.get("protectedSettings"):
    thumb = handler["protectedSettingsCertThumbprint"]
    plain = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-inkey", os.path.join(lib_dir, thumb + ".prv"),
         "-recip", os.path.join(lib_dir, thumb + ".crt")],
        input=base64.b64decode(handler["protectedSettings"]), capture_output=True, check=True).stdout
    fd = os.open(os.path.join(folder, "decrypted.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, plain)
    os.close(fd)
    secret = json.loads(plain)
    if behaviour.get("create_user"):  # as VMAccess does (only in the emulated VM)
        if subprocess.run(["getent", "passwd", secret["username"]], capture_output=True).returncode:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", secret["username"]], check=True)
        line = (secret["username"] + ":" + secret["password"]).encode()
        subprocess.run(["chpasswd"], input=line, check=True)
        log("user " + secret["username"] + " is ready")
for path, content in sorted(behaviour.get("files", {}).items()):
    with open(path, "w") as out:
        out.write(content)
if behaviour.get("child"):
    child = subprocess.Popen(["sleep", "300"])
    open(os.path.join(lib_dir, name + ".child.pid"), "w").write(str(child.pid))
if options["reopen_stdout"]:
    log("starting " + op)  # truncated away by the next line, as with such loggers
log(behaviour.get("stdout", op + " says hello"))
print(behaviour.get("stderr", op + " on stderr"), file=sys.stderr)
sys.stderr.flush()
time.sleep(behaviour.get("sleep", 0))
if "heartbeat" in behaviour:
    beat = {"status": behaviour["heartbeat"], "code": 0,
            "formattedMessage": {"lang": "en-US", "message": "heart of " + name}}
    json.dump([{"version": 1.0, "heartbeat": beat}], open(environment["heartbeatFile"], "w"))
if op == "enable" and options["style"] == "runcommand":
    with open(extension + ".mrseq", "w") as mrseq:  # its own, in the handler folder (cwd)
        mrseq.write(seq)
status_path = os.path.join(environment["statusFolder"], prefix + seq + ".status")
if "raw_status" in behaviour:
    open(status_path, "w").write(behaviour["raw_status"])
elif op in ("enable", "disable"):
    status = {"name": name, "operation": op, "status": behaviour.get("status", "success"),
              "code": "0" if options["string_code"] else 0,
              "formattedMessage": {"lang": "en-US", "message": op + " done for seqNo " + seq}}
    if options["string_code"]:
        status["substatus"] = None
    json.dump([{"version": 1.0, "timestampUTC": "2026-01-01T00:00:00Z", "status": status}],
              open(status_path, "w"))
sys.exit(behaviour.get("exit", 0))
'''

# A shim like VMAccess's: `-c COMMAND` names the script, `-i/-e/-d/-u/-p` the operation.
EXTENSION_SHIM = """#!/bin/sh
# Picks a Python and runs COMMAND with the operation's flag.
COMMAND=
OPERATION=
while getopts "c:iedup" opt; do
    case "$opt" in
        c) COMMAND="$OPTARG" ;;
        i) OPERATION="-install" ;;
        e) OPERATION="-enable" ;;
        d) OPERATION="-disable" ;;
        u) OPERATION="-uninstall" ;;
        p) OPERATION="-update" ;;
        *) echo "usage: $0 -c COMMAND -i|-e|-d|-u|-p" >&2; exit 2 ;;
    esac
done
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
        exec "$candidate" "$COMMAND" "$OPERATION"
    fi
done
echo "no python interpreter found" >&2
exit 3
"""

EXTENSION_NOOP = """#!/bin/sh
# Nothing to do for this operation.
exit 0
"""

PYTHON_SH = """#!/bin/sh
# The interpreter the handler's relative shebang names.
exec python3 "$@"
"""

# Like RunCommand v2's shim: the operation as its one argument, the extension's name and
# seqNo from the environment the agent sets, a lock file in the handler folder.
RUN_COMMAND_SHIM = """#!/bin/sh
set -e
if [ "$#" -ne 1 ]; then
    echo "usage: $0 <command>" >&2
    exit 1
fi
echo "ConfigExtensionName: ${ConfigExtensionName:-}"
echo "ConfigSequenceNumber: ${ConfigSequenceNumber:-}"
touch ./run-command-handler.lock
here="$(dirname "$0")"
if [ "$1" = enable ] && grep -q '"detach_enable": true' "$here/fleet-options.json"; then
    # As the published shim does: enable goes on in the background, so the agent's
    # command returns at once and the status file comes later.
    nohup python3 "$here/handler.py" "$1" >/dev/null 2>&1 &
    exit 0
fi
exec python3 "$here/handler.py" "$1"
"""

CUSTOM_SCRIPT_SHIM = """#!/bin/sh
# Runs the handler next to this shim with the operation as given.
set -e
exec python3 "$(dirname "$0")/handler.py" "$1"
"""


def _commands(style: str) -> dict[str, str]:
    operations = ("install", "uninstall", "update", "enable", "disable")
    if style == "sample":
        return {op: f"sample.py -{op}" for op in operations}
    if style == "access":
        return {
            **{op: "extension_noop.sh" for op in operations},
            "enable": "extension_shim.sh -c ./access.py -e",
        }
    if style == "shebang":
        return {op: f"handler.py -{op}" for op in operations}
    if style == "script":
        return {op: f"bin/custom-script-shim {op}" for op in operations}
    if style == "runcommand":
        return {op: f"bin/run-command-shim {op}" for op in operations}
    raise ValueError(f"unknown style {style!r}")


def _files(style: str) -> dict[str, str]:
    """The package's scripts, by path (mode bits unset: the agent marks them executable)."""
    python = "#!/usr/bin/env python3" + CORE_PY
    if style == "sample":
        return {"sample.py": python}
    if style == "access":
        return {
            "access.py": python,
            "extension_shim.sh": EXTENSION_SHIM,
            "extension_noop.sh": EXTENSION_NOOP,
        }
    if style == "shebang":
        return {"handler.py": "#!./python.sh" + CORE_PY, "python.sh": PYTHON_SH}
    if style == "runcommand":
        return {"bin/handler.py": python, "bin/run-command-shim": RUN_COMMAND_SHIM}
    return {"bin/handler.py": python, "bin/custom-script-shim": CUSTOM_SCRIPT_SHIM}


def handler_manifest(
    name: str, version: str, style: str = "sample", *, bom: bool = False, **overrides: Any
) -> bytes:
    commands = {f"{op}Command": command for op, command in _commands(style).items()}
    manifest = {**commands, "rebootAfterInstall": False, "reportHeartbeat": False,
                "updateMode": "UpdateWithInstall", **overrides}  # fmt: skip
    if style == "runcommand":  # as RunCommand v2 ships it: no name, the flag as a string
        manifest = {**commands, "supportsPolicy": True, "rebootAfterInstall": False,
                    "reportHeartbeat": False, "updateMode": "UpdateWithInstall",
                    "supportsMultipleExtensions": "true", **overrides}  # fmt: skip
        text = json.dumps([{"version": 1.0, "handlerManifest": manifest}], indent=2)
        return ("\ufeff" if bom else "").encode() + text.encode()
    text = json.dumps([{"name": name, "version": version, "handlerManifest": manifest}], indent=2)
    return ("\ufeff" if bom else "").encode() + text.encode()


def extension_zip(
    name: str,
    version: str,
    *,
    style: str = "sample",
    subfolder: str | None = None,
    bom: bool | None = None,
    reopen_stdout: bool | None = None,
    string_code: bool | None = None,
    detach_enable: bool = False,
    **manifest_overrides: Any,
) -> bytes:
    """A test extension package in `style` (see the module docstring). `detach_enable`
    (the `runcommand` style): enable runs in the background, as RunCommand v2's does."""
    access = style == "access"
    options = {
        "style": style,
        "reopen_stdout": access if reopen_stdout is None else reopen_stdout,
        "string_code": access if string_code is None else string_code,
        "detach_enable": detach_enable,
    }
    manifest_folder = ("meta/" if style == "script" else "") if subfolder is None else subfolder
    with_bom = style == "shebang" if bom is None else bom
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            f"{manifest_folder}HandlerManifest.json",
            handler_manifest(name, version, style, bom=with_bom, **manifest_overrides),
        )
        files = _files(style)
        for path, content in files.items():
            archive.writestr(path, content)
        for folder in sorted({path.rpartition("/")[0] for path in files}):
            archive.writestr(f"{folder}/fleet-options.json".lstrip("/"), json.dumps(options))
    return buffer.getvalue()
