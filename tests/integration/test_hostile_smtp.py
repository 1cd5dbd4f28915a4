"""A submission server that echoes AUTH back: the password (raw, or in AUTH PLAIN's and
AUTH LOGIN's base64) never reaches the error field, the point or the log."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from prober.config.mail import Endpoint, ImapSettings, Mailbox, Timeouts
from prober.config.reader import Secret
from prober.probes.smtp import submit
from prober.schema import ErrorClass

pytestmark = pytest.mark.integration

PASSWORD = "smtp-echo-Pa55word"


class EchoingSubmission:
    """Offers AUTH `mechanism` and answers every AUTH step with 535 and what it got."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.port = 0

    async def __aenter__(self) -> EchoingSubmission:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 echo ESMTP\r\n")
        try:
            while line := await reader.readline():
                text = line.rstrip(b"\r\n")
                if text.upper().startswith(b"EHLO"):
                    writer.write(b"250-echo\r\n250 AUTH " + self.mechanism.encode() + b"\r\n")
                elif text.upper().startswith(b"AUTH LOGIN"):
                    words = text.split()
                    if len(words) > 2:  # the user name as the initial response
                        user = words[2]
                    else:
                        writer.write(b"334 VXNlcm5hbWU6\r\n")  # Username:
                        await writer.drain()
                        user = (await reader.readline()).rstrip(b"\r\n")
                    writer.write(b"334 UGFzc3dvcmQ6\r\n")  # Password:
                    await writer.drain()
                    secret = (await reader.readline()).rstrip(b"\r\n")
                    writer.write(b"535 5.7.8 rejected " + user + b" " + secret + b"\r\n")
                elif text.upper().startswith(b"AUTH"):
                    writer.write(b"535 5.7.8 you sent: " + text + b"\r\n")
                elif text.upper().startswith(b"QUIT"):
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_an_echoed_auth_never_puts_the_password_into_an_error(
        mechanism: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prober")

    async def run() -> str:
        async with EchoingSubmission(mechanism) as server:
            ep = Endpoint("127.0.0.1", server.port, "none")
            mailbox = Mailbox("echo", "probe@echo.test", "probe@echo.test",
                              Secret("env:ECHO", PASSWORD), ep, ImapSettings(ep))
            result = await asyncio.wait_for(submit(mailbox, Timeouts(5, 5)), 20)
            assert result.error is not None and result.error.kind == ErrorClass.AUTH
            return str(result.error)

    error = asyncio.run(run())
    assert "535" in error and "****" in error, error
    b64 = base64.b64encode
    for form in (PASSWORD, b64(PASSWORD.encode()).decode(),
                 b64(f"\0probe@echo.test\0{PASSWORD}".encode()).decode()):
        assert form not in error and form not in caplog.text
