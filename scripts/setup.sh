#!/usr/bin/env bash
# Sets up everything jitgate needs on a fresh machine: the virtualenv with the
# project and its test tools, and the system programs the tests and the demo run
# for real (OpenSSH's sshd and client, psql, Java's PostgreSQL JDBC driver, Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

need_apt=()
command -v ssh >/dev/null || need_apt+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v psql >/dev/null || need_apt+=(postgresql-client)
# A real JDBC client for the PostgreSQL broker's tests: a JDK runs the one-file test client.
command -v javac >/dev/null || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
# Node.js and npm: the OpenID provider of the sign-in tests, `jitgate demo` and its web console
# (tests/oidc/provider) and the S3-compatible server of the recording-store tests (s3rver).
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# Debian's Chromium and its chromedriver (the same package version, so no driver download):
# the web console's browser tests drive them with Selenium (tests/web).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]}" >&2
  fi
fi

# An unprivileged account for logins on the SSH tests' target sshd (tests/broker/ssh/harness.py,
# TARGET_USER): sshd refuses session signals for root, so a cut's `signal KILL` is only seen to
# stop the target's command through a login like this. No home, no password ('*': not locked, so
# sshd without PAM still lets a certificate in); the target trusts only the test CA.
if ! getent passwd jitgate-target >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh jitgate-target
    usermod -p '*' jitgate-target
  else
    echo "setup: the SSH tests' non-root target login needs an account: sudo $0" >&2
  fi
fi

# s3rver: a standalone S3-compatible server (filesystem-backed) from npm, pinned.
if ! command -v s3rver >/dev/null && command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    if ! npm install -g --silent --no-audit --no-fund s3rver@3.7.1 >/tmp/jitgate-s3rver-install.log 2>&1; then
      cat /tmp/jitgate-s3rver-install.log >&2
      echo "setup: installing s3rver (npm) failed (log above)" >&2
      exit 1
    fi
  else
    echo "setup: please install s3rver: npm install -g s3rver@3.7.1" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # pip's notices go to a log; on failure the log is shown.
  if ! { "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q -e '.[test]'; } >"$VENV/setup.log" 2>&1; then
    cat "$VENV/setup.log" >&2
    echo "setup: installing jitgate into $VENV failed (log above)" >&2
    exit 1
  fi
  touch "$stamp"
fi

# oidc-provider (npm, pinned by tests/oidc/provider/package-lock.json), installed once per lock change.
oidc=tests/oidc/provider
if [ ! -f "$oidc/node_modules/.installed" ] || [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.installed" ]; then
  if ! command -v npm >/dev/null; then
    echo "setup: npm is missing: install nodejs and npm (the OpenID provider of the sign-in tests needs them)" >&2
    exit 1
  fi
  if ! (cd "$oidc" && npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1); then
    cat "$oidc/npm-ci.log" >&2
    echo "setup: npm ci in $oidc failed (log above)" >&2
    exit 1
  fi
  rm -f "$oidc/npm-ci.log"
  touch "$oidc/node_modules/.installed"
fi
