"""Unit files as distributions ship them, for tests that need their real text."""

# Debian 13 (trixie) openssh-server 1:10.0p1-7+deb13u4:
# usr/lib/systemd/system/sshd-keygen.service, taken from the .deb unchanged. Its
# postinst enables it: a link in the .wants of each unit its WantedBy= names.
TRIXIE_SSHD_KEYGEN = """\
[Unit]
Description=Generate sshd host keys on first boot
ConditionFirstBoot=yes
ConditionPathIsReadWrite=/etc/ssh
ConditionPathIsSymbolicLink=!/etc/ssh
Before=ssh.service sshd.service sshd@.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=ssh-keygen -A

[Install]
WantedBy=ssh.service sshd.service sshd@.service ssh.socket
"""
