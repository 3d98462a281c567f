"""No log record, at any level, ever holds a token: not for refusals, not when the HTTP parser chokes on one.

aiohttp's own parser-error handling logs the offending header line; with a
token plus one bad byte, or an oversized Authorization header, that line is
the token.  Every hostile request below is sent over a raw socket while all
loggers record at DEBUG, then the signature part of each token (the part
that makes it usable) is searched for in every message and traceback.
"""
import logging

from tests.security.stack import assert_refused


async def test_tokens_never_reach_any_log(stack, caplog):
    caplog.set_level(logging.DEBUG)
    valid = stack.token("read:user")
    admin = stack.token("read:admin")
    secrets = [t.rsplit(".", 1)[1] for t in (valid, admin)]
    requests = [
        [("Authorization", f"Bearer {valid}\x01")],  # a control byte: the parser refuses the line
        [("Authorization", f"Bearer {valid}" + "A" * 20000)],  # over the header size limit
        [("Authorization", f"Bearer {valid}"), ("Authorization", f"Bearer {admin}")],
        [("Authorization", f"Bearer {admin}x")],  # bad signature
        [("Authorization", f"Bearer {valid} {admin}")],
        [("Authorization", f"Basic {valid}")],
        [("X-Request-Id", valid)],
        [("Cookie", f"token={admin}")],
    ]
    for headers in requests:
        await stack.get("/admin/x", headers=headers)
    for target in (f"/admin/x?access_token={admin}", f"/public/{valid}", f"/public/x?t={valid}#{admin}",
                   f"/admin/{admin}%00"):
        await stack.get(target)
    assert_refused(await stack.get("/admin/x", token=valid), 403)  # a plain refusal is logged too
    assert (await stack.get("/admin/x", token=admin)).status == 200
    assert caplog.records, "nothing was logged at all: the capture is not working"
    for record in caplog.records:
        text = record.getMessage() + (caplog.handler.format(record) if record.exc_info else "")
        for secret in secrets:
            assert secret not in text, (record.name, record.levelname, text[:300])
