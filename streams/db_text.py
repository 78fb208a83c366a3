"""Database URLs and driver messages as a user may see them: passwords hidden, and the
server's answers that name a configuration error rather than an outage.

Standard library only, so the CLI and the worker's start-up can use it without loading
SQLAlchemy.

>>> hide_password("postgresql://forexd:s3cret@db:5432/forexd?sslpassword=k3y")
'postgresql://forexd:***@db:5432/forexd?sslpassword=***'
>>> hide_secrets('invalid dsn: password=ab "s3cret"', "postgresql://u:ab@h/d?password=s3cret")
'invalid dsn: password=*** "***"'
"""

from __future__ import annotations

import re

from forex_diffusion.errors import ServiceUnavailableError

__all__ = ["LOGIN_REFUSED", "MISSING_DATABASE", "NO_PASSWORD", "LoginRefusedError", "hide_password", "hide_secrets"]

#: A query parameter that may hold a secret (libpq takes ``?password=``, ``?sslpassword=``).
_SECRET_PARAM = re.compile(r"([?&][^=&#]*(?:password|passwd|pwd|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE)
_SECRET_NAME = re.compile(r"password|passwd|pwd|secret|token", re.IGNORECASE)
_SECRET_IN_VALUE = re.compile(r"(?:password|passwd|pwd|secret|token)\s*=", re.IGNORECASE)


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***``: the one after ``user:`` (everything up
    to the last ``@``: a password may hold one) and any ``password=``-like query value."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest or (not sep and "@" in url):
        userinfo, _, host = (rest if sep else url).rpartition("@")
        user, colon, _ = userinfo.partition(":")
        hidden = f"{user}:***" if colon else userinfo
        url = f"{scheme}://{hidden}@{host}" if sep else f"***@{host}"
    return _hide_query_secrets(_SECRET_PARAM.sub(r"\1***", url))


def _hide_query_secrets(url: str) -> str:
    """``url`` with the value of each query parameter hidden whose name, once percent-decoded as
    the driver decodes it, names a secret (``?pass%77ord=``), or whose decoded value holds
    one (``?dbname=x%20password%3Ds3cret``: libpq may read it as a connection string)."""
    from urllib.parse import unquote

    base, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = query.partition("#")
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and value != "***" and (_SECRET_NAME.search(unquote(name)) or _SECRET_IN_VALUE.search(unquote(value))):
            value = "***"
        parts.append(f"{name}{eq}{value}")
    return f"{base}?{'&'.join(parts)}{hash_}{fragment}"


def hide_secrets(text: str, url: str) -> str:
    """``text`` (a driver's message) with the password of ``url`` and any ``password=``-like
    query value of it replaced by ``***``: a driver may echo an option's value."""
    from urllib.parse import unquote

    query = url.partition("?")[2].partition("#")[0]
    secrets = [
        unquote(value)
        for name, _, value in (part.partition("=") for part in query.split("&"))
        if _SECRET_NAME.search(unquote(name))
    ]
    scheme, sep, rest = url.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else ""
    if ":" in userinfo:
        secrets.append(unquote(userinfo.split(":", 1)[1]))
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(f'"{secret}"', '"***"')  # libpq quotes the value it refuses
        if len(secret) >= 4:
            text = text.replace(secret, "***")
        else:  # a short one anywhere would star out common letters: only where it stands as a value
            text = re.sub(rf"(?<=[=:'\"]){re.escape(secret)}(?=[\s'\"&;,.)\]@/:?#!]|$)", "***", text)
    # whatever a secret-named key is given, in any echo shape (password=x, password: x, pwd = 'x y')
    return _SECRET_ASSIGNMENT.sub(lambda m: m["key"] + "***", text)


#: A secret-named key and its value as a driver may echo it: quoted, or up to a separator (its
#: first character whatever it is: ``password: ]`` kept a one-character ``]``).
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>\b\w*(?:password|passwd|pwd|secret|token)\w*\s*[=:]\s*)(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|\S[^\s,;&)\]]*)",
    re.IGNORECASE,
)


#: The server answered: the database the URL names is not there (exit 66, as a missing SQLite file).
MISSING_DATABASE = re.compile(r'FATAL:\s+database (".*") does not exist')
#: The server answered and refused the user (a missing role, a wrong password, pg_hba.conf).
LOGIN_REFUSED = re.compile(
    r'FATAL:\s+(?:role ".*" does not exist|password authentication failed|no pg_hba\.conf entry'
    r"|.* authentication failed for user|permission denied for database)"
)


#: libpq's own word when the server asks for a password and the URL gives none: a refused login too.
NO_PASSWORD = re.compile(r"fe_sendauth: no password supplied")
#: The server's reason, after libpq's ``connection to server at "h", port p failed: FATAL:  ``.
_SERVER_SAYS = re.compile(r"^.*?(?:FATAL|ERROR):\s+")


class LoginRefusedError(ServiceUnavailableError):
    """The database answered and refused the login: a role it does not have, a failed
    password, a host ``pg_hba.conf`` does not admit, no ``CONNECT`` right, no password given.

    Exit 69 as :class:`~forex_diffusion.errors.ServiceUnavailableError` (the README's "or the
    database refuses the login"), but its line says what the server said, not "database
    unreachable at …": the server is running, and "start it" sent an operator to it.
    """

    def __init__(self, address: str, said: str, where: str) -> None:
        reason = _SERVER_SAYS.sub("", said, count=1).strip() or said
        low = reason.lower()
        if "role" in low and "does not exist" in low:
            fix = f"create that role, or fix the user in {where}"
        elif "password authentication failed" in low:
            fix = f"check the password (and the user) in {where}"
        elif "no password supplied" in low:
            reason = "the server asks for a password, and the URL gives none"
            fix = f"add the password to {where} (postgresql+psycopg2://USER:PASSWORD@HOST/DB) or use a .pgpass file"
        elif "pg_hba.conf" in low:
            fix = f"admit this host and user in the server's pg_hba.conf, or fix the user in {where}"
        elif "permission denied for database" in low:
            fix = f"grant the user CONNECT on that database, or fix the user in {where}"
        else:
            fix = f"check the user and password in {where}"
        super().__init__("database", address, reason)
        # the parent's text says "unreachable": this one says what the server answered
        self.args = (
            f"database login failed at {address}: {reason}: the server refuses the login (it is running): {fix}",
        )
