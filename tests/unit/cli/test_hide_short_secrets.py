"""A short password (1 to 3 characters) echoed by a driver is hidden where it stands as a value.

``hide_secrets`` replaced a password of four or more characters anywhere in a driver's
message, and one shorter only inside double quotes: ``password=ab host=…`` (a DSN echoed by
psycopg2) and ``'ab'`` kept it. A short one is now hidden wherever it stands as a value
(after ``=``, ``:`` or a quote, up to a separator), and nowhere else, so the message's own
words keep their letters.
"""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import assume, example, given
from hypothesis import strategies as st

from streams.db_text import hide_secrets

_short = st.text(alphabet=string.ascii_letters + string.digits + "!#$%*+-_.~", min_size=1, max_size=3)


@given(secret=_short)
def test_a_short_password_in_an_echoed_dsn_is_hidden(secret: str) -> None:
    assume(secret != "***")  # the mask itself: hidden, it reads the same
    # quoted, as a user writes it: raw, ``%00`` in a URL is the password "\x00", not "%00"
    url = f"postgresql+psycopg2://forexd:{quote(secret, safe='')}@127.0.0.1:5432/db"
    for message in (
        f"invalid dsn: host=127.0.0.1 user=forexd password={secret} dbname=db",
        f"invalid dsn: password={secret}",
        f"option 'password' has value '{secret}' that is refused",
        f'invalid value "{secret}" for connection option',
    ):
        shown = hide_secrets(message, url)
        assert f"={secret} " not in shown and not shown.endswith(f"={secret}")
        assert f"'{secret}'" not in shown and f'"{secret}"' not in shown
        assert "***" in shown


@given(secret=_short)
def test_a_short_query_password_is_hidden_as_a_value(secret: str) -> None:
    url = f"postgresql+psycopg2://forexd@127.0.0.1:5432/db?password={quote(secret, safe='')}"
    shown = hide_secrets(f"invalid dsn: user=forexd password={secret}", url)
    assert shown == "invalid dsn: user=forexd password=***"


def test_a_short_password_leaves_the_message_words_alone() -> None:
    url = "postgresql+psycopg2://forexd:on@127.0.0.1:5432/db"
    message = 'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed'
    assert hide_secrets(message, url) == message


@given(
    secret=st.text(alphabet=string.ascii_letters + string.digits + "!#$%*+-_.~:?]'\\", min_size=1, max_size=12),
    key=st.sampled_from(["password", "PASSWORD", "sslpassword", "passwd", "pwd"]),
    shape=st.sampled_from(["{k}={v}", "{k}={v}.", "{k}={v}]", "{k}: {v}", "{k}= {v}", "{k}='{q}'", '{k}="{d}"']),
)
@example(secret="]", key="password", shape="{k}: {v}")  # found by hypothesis: a separator for a value
def test_a_value_given_to_a_secret_named_key_is_hidden_in_any_echo_shape(secret: str, key: str, shape: str) -> None:
    """Review: with a short password, ``password=ab.``, ``password=ab]``, ``password: ab``
    and ``password= ab`` kept it. Whatever a secret-named key is given is hidden, quoted
    (with its escapes) or up to a separator."""
    url = f"postgresql+psycopg2://forexd:{quote(secret, safe='')}@127.0.0.1:5432/db"
    q = secret.replace("\\", "\\\\").replace("'", "\\'")
    d = secret.replace("\\", "\\\\").replace('"', '\\"')
    message = "invalid dsn: host=h " + shape.format(k=key, v=secret, q=q, d=d) + " dbname=db"
    around = "***" + "invalid dsn: host=h " + shape.format(k=key, v="", q="", d="") + " dbname=db"
    assume(secret not in around)  # else the secret's letters are the message's own
    assert secret not in hide_secrets(message, url)
