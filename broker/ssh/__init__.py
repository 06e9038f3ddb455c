"""The asyncssh SSH broker: `SSHBroker(BrokerConfig.build(...))`, see broker.ssh.server.

Run it:  jitgate ssh-broker --listen 127.0.0.1:2222 --identity DIR --server CP --data-dir D
Connect: ssh -p 2222 LOGIN@RESOURCE@broker-host   (also scp -P, sftp -P, rsync -e "ssh -p 2222")
         or `jitgate ssh RESOURCE`, or plain `ssh RESOURCE` after `jitgate ssh-config`.

The user name is `LOGIN@RESOURCE` (the last `@` splits it); the certificate
jitgate issued names exactly that as its principal. The broker's host key is
made once in D (`ssh_host_ed25519_key`, encrypted; `.pub` beside it) and is
pinned by users with `jitgate ssh --broker-host-key D/ssh_host_ed25519_key.pub`
(or `jitgate ssh-config --broker-host-key ...`), never trusted on first use.

One session channel, start to end:

    user (OpenSSH)            broker                          control plane         target sshd
    -- userauth cert ------>  check CA/principal/window/serial
                              (GetTrust, refreshed on events)
    <- banner + failure ----  refused: ReportRefusal -------->
    -- exec/shell/sftp ---->  AuthorizeSession(channel) ------>  grant ACTIVE?
                              recording + monitor start
                              new key, IssueUpstreamCertificate ->
                              connect (pinned host key) ------------------------------>  TrustedUserCAKeys
    <======== bytes, window changes, signals, EOF, exit status (recorded) ==========>
                              WatchEvents: extended -> deadline moves; revoked -> cut
    <- "jitgate: ... expired at ..." and disconnect at the deadline (own timer)
                              ReportSessionEnd(reason, bytes, recording ref + hash) ->

Session options (the decision's `session`; options.py holds the one check):
- `pty`: a terminal (`ssh -t`). `exec`: commands of the user's choosing, i.e. a command
  on the ssh command line (with or without -t) and a shell without a terminal
  (commands piped in). `sftp`: file transfer: the sftp subsystem (sftp, scp's default
  mode) and transfer programs run as commands (`scp -O`, `sftp -s PATH`, `rsync`), which
  also need `exec`. `port_forwarding`: `ssh -L/-W/-D` (direct-tcpip); `-R`, agent and
  X11 forwarding never. So `pty: true, exec: false` allows an interactive terminal only.
- The control plane checks the channel the broker names (`shell` -> pty, `exec`, `sftp`,
  `port_forwarding`); the broker checks every option the request needs once authorized.

Recording, fail closed:
- Every chunk is recorded before it is relayed; what the user sends in an exec session
  or a forward (and typed keys when `--record-keystrokes`) and every sftp operation the
  server answered are handed to the OS first (`RecordingWriter.commit`), so a kill -9 of
  the broker loses nothing that reached the target or was acknowledged; other output is
  buffered by the writer (at most 256 KiB or about a second ahead of the disk).
- A recording that cannot be written (disk full, I/O error) cuts its session with a line
  naming the cause ("... can no longer record this session (no space left on the
  recordings disk)"), end reason `recording_failed`, and the hash of what reached the
  disk (the recording verifies as intact, unsealed, up to it). A forward shows the line
  as the disconnect reason, sent before the channels close so OpenSSH prints it.
- A session whose recording cannot be created is refused ("the broker cannot record
  this session: ...; nothing was run"), a forward at open; both are reported ended
  (`recording_failed`) at once, never left live at the control plane.
- `--max-recording-bytes` (default 1 GiB, recorder.limits says why) bounds one
  session's recording: the chunk that would pass it is neither recorded nor relayed,
  the session is cut with a line, ends `recording_limit`, and its recording is sealed.

Modules: auth (user name, certificate checks, the pinned asyncssh hook), server
(listener, trust, per-connection auth, over `broker.runtime`, shared with the
PostgreSQL broker), channel (what every relayed channel shares: recording guard,
monitor, flow control, seal and end report), relay (session channels), forward
(direct-tcpip when allowed), options (what each session option allows), sftp
(operation log for the recording), upstream (the broker's own connection to the
target), config.
"""
from broker.ssh.config import BrokerConfig
from broker.ssh.server import SSHBroker

__all__ = ["BrokerConfig", "SSHBroker"]
