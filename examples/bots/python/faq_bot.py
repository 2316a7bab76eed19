"""A FAQ bot for Switchboard, in Python: the same bot as bots/faq (Rust).

It answers visitors from a FAQ file, and hands the conversation to the
humans of its team when the visitor asks for a person ("human", "agent",
"person") or after two messages it could not answer. It is a working reading
of docs/bots.md: it acts only through the bot API (request/reply on
``bot.api.<bot_id>.<call>``), reads with its own durable consumer on the
``CHAT`` stream, and never answers a message twice (each answer's key is
``re-<seq>`` of the message it answers).

Configured by the environment: ``NATS_URL`` (default
``nats://127.0.0.1:4222``), ``BOT_ID`` and ``FAQ_FILE`` (required), and
optionally ``NATS_CREDS`` (a .creds file), ``NATS_INBOX_PREFIX`` (the reply
prefix the bot's NATS user may use) and ``BOT_INSTANCE``. The same settings
may be given as flags (``--nats-url``, ``--bot-id``, ``--faq-file``).

Needs Python 3.11+ (tomllib) and the packages of requirements.txt:
``nats-py`` and ``msgpack``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import tomllib
from dataclasses import dataclass, field

import msgpack
import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger("faq_bot")

# ---------------------------------------------------------------- the FAQ

HANDOFF_WORDS = ("human", "agent", "person")
MISSES_BEFORE_HANDOFF = 2
DEFAULT_FALLBACK = (
    'Sorry, I did not understand. Write "person" to talk to someone from our team.'
)
DEFAULT_HANDOFF = "I'm getting you a person from our team."

ANSWER, HAND_OFF, MISS = "answer", "hand_off", "miss"


class FaqError(Exception):
    """The FAQ file cannot be used."""


def words(text: str) -> list[str]:
    """The lowercase words of a text: runs of letters and digits."""
    return [w for w in re.split(r"[\W_]+", text.lower()) if w]


@dataclass
class Faq:
    entries: list[tuple[list[str], str]]
    fallback: str = DEFAULT_FALLBACK
    handoff: str = DEFAULT_HANDOFF

    @classmethod
    def parse(cls, text: str) -> "Faq":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise FaqError(f"parse the FAQ file: {err}") from err
        unknown = set(data) - {"faq", "fallback", "handoff"}
        if unknown:
            raise FaqError(f"parse the FAQ file: unknown keys {sorted(unknown)}")
        entries = []
        for i, entry in enumerate(data.get("faq", []), start=1):
            if not isinstance(entry, dict) or set(entry) != {"keywords", "answer"}:
                raise FaqError(f"parse the FAQ file: entry {i} needs keywords and answer")
            keywords = [" ".join(words(str(k))) for k in entry["keywords"]]
            keywords = [k for k in keywords if k]
            answer = str(entry["answer"])
            if not keywords or not answer.strip():
                raise FaqError(f"the FAQ has an entry without keywords or answer (entry {i})")
            entries.append((keywords, answer))
        return cls(
            entries=entries,
            fallback=str(data.get("fallback", DEFAULT_FALLBACK)),
            handoff=str(data.get("handoff", DEFAULT_HANDOFF)),
        )

    @classmethod
    def load(cls, path: str) -> "Faq":
        try:
            with open(path, encoding="utf-8") as file:
                return cls.parse(file.read())
        except OSError as err:
            raise FaqError(f"read {path}: {err}") from err

    def decide(self, text: str) -> tuple[str, str | None]:
        """(ANSWER, answer), (HAND_OFF, None) or (MISS, None) for a message."""
        said = words(text)
        if any(w in HANDOFF_WORDS for w in said):
            return HAND_OFF, None
        padded = f" {' '.join(said)} "
        for keywords, answer in self.entries:
            if any(f" {k} " in padded for k in keywords):
                return ANSWER, answer
        return MISS, None


# ------------------------------------------------------- the wire (docs/bots.md)

BOT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHAT_STREAM = "CHAT"
CHAT_SUBJECTS = "chat.conv.*"
CALL_TIMEOUT = 10.0
ACK_WAIT = 30.0
RETRY_DELAY = 2.0


def pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes):
    return msgpack.unpackb(data, raw=False)


class CallError(Exception):
    """A bot API call failed: refused by the router (``code``), or unanswered."""

    def __init__(self, call: str, code: str | None, message: str):
        super().__init__(f"{call}: {code or 'no answer'}: {message}")
        self.code = code

    @property
    def temporary(self) -> bool:
        return self.code in (None, "unavailable")


class Api:
    """The bot API of one bot: ``bot.api.<bot_id>.<call>``."""

    def __init__(self, nc, bot_id: str):
        self.nc = nc
        self.bot_id = bot_id

    async def call(self, call: str, request: dict) -> dict:
        subject = f"bot.api.{self.bot_id}.{call}"
        try:
            answer = await self.nc.request(subject, pack(request), timeout=CALL_TIMEOUT)
        except (NoRespondersError, NatsTimeoutError, asyncio.TimeoutError) as err:
            raise CallError(call, None, f"no router answered ({type(err).__name__})") from err
        reply = unpack(answer.data)
        error = reply.get("error") if isinstance(reply, dict) else None
        if error:
            raise CallError(call, error.get("code"), error.get("message", ""))
        return reply

    async def send(self, conversation_id: str, text: str, key: str) -> dict:
        reply = await self.call(
            "send", {"conversation_id": conversation_id, "text": text, "key": key}
        )
        return reply["sent"]

    async def hand_off(self, conversation_id: str) -> None:
        await self.call("handoff", {"conversation_id": conversation_id})

    async def presence(self, instance: str | None) -> float:
        reply = await self.call("presence", {"instance": instance})
        return max(reply.get("every_ms") or 5000, 1000) / 1000.0

    async def conversations(self, one: str | None = None) -> list[dict]:
        reply = await self.call("conversations", {"conversation_id": one})
        return reply.get("conversations") or []


# ---------------------------------------------------------------- the bot


@dataclass
class Held:
    """A conversation the bot holds: the visitor's messages it missed, by seq."""

    missed: set[int] = field(default_factory=set)


class Bot:
    def __init__(self, nc, bot_id: str, faq: Faq, instance: str | None):
        self.nc = nc
        self.bot_id = bot_id
        self.faq = faq
        self.instance = instance
        self.api = Api(nc, bot_id)
        self.held: dict[str, Held] = {}
        self.notices: asyncio.Queue = asyncio.Queue()

    async def run(self, stop: asyncio.Event) -> None:
        presence = asyncio.create_task(self.announce(stop))
        await self.nc.subscribe(f"inbox.bot.{self.bot_id}", cb=self.notices.put)
        js = self.nc.jetstream()
        durable = f"bot-{self.bot_id}"
        await js.add_consumer(
            CHAT_STREAM,
            ConsumerConfig(
                name=durable,
                durable_name=durable,
                filter_subject=CHAT_SUBJECTS,
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT,
                max_ack_pending=1000,
            ),
        )
        records = await js.pull_subscribe_bind(durable=durable, stream=CHAT_STREAM)
        # What it holds already (a restart): answer what waits there.
        await self.catch_up(None)
        log.info("bot %s running, holding %d conversations", self.bot_id, len(self.held))
        while not stop.is_set():
            while not self.notices.empty():
                await self.on_notice(self.notices.get_nowait())
            try:
                batch = await records.fetch(batch=20, timeout=0.5)
            except (NatsTimeoutError, asyncio.TimeoutError):
                continue
            except Exception as err:  # a reconnection, a server restart: go on
                log.warning("bot consumer: %s", err)
                await asyncio.sleep(0.5)
                continue
            for message in batch:
                await self.on_record(message)
        presence.cancel()
        log.info("bot %s stopped", self.bot_id)

    async def announce(self, stop: asyncio.Event) -> None:
        every = 5.0
        while not stop.is_set():
            try:
                every = await self.api.presence(self.instance)
            except CallError as err:
                log.warning("announce presence: %s", err)
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except asyncio.TimeoutError:
                pass

    async def on_notice(self, message) -> None:
        try:
            notice = unpack(message.data)
            kind, conversation = notice["kind"], notice["conversation_id"]
        except Exception as err:
            log.warning("undecodable bot notice: %s", err)
            return
        if kind == "assigned":
            log.info("conversation %s assigned", conversation)
            await self.take(conversation)
        elif kind == "released":
            log.info("conversation %s released (%s)", conversation, notice.get("reason"))
            self.held.pop(conversation, None)

    async def take(self, conversation: str) -> None:
        """A conversation is (or may be) the bot's: answer what waits in it."""
        if conversation not in self.held:
            await self.catch_up(conversation)

    async def catch_up(self, one: str | None) -> None:
        try:
            held = await self.api.conversations(one)
        except CallError as err:
            log.warning("list the bot's conversations: %s", err)
            return
        for conversation in held:
            self.held.setdefault(conversation["conversation_id"], Held())
            for record in conversation.get("waiting") or []:
                try:
                    await self.answer(record)
                except CallError as err:
                    log.warning("answer a waiting message: %s", err)

    async def on_record(self, message) -> None:
        """One record of the consumer: follow who holds what, answer, ack."""
        try:
            record = unpack(message.data)
            conversation = record["conversation_id"]
            body, sender = record["body"], record["sender"]
        except Exception as err:
            log.warning("undecodable record skipped: %s", err)
            await message.ack()
            return
        try:
            if body.get("kind") == "event":
                event = body.get("event")
                agent = body.get("agent") or {}
                if event == "assigned" and agent.get("role") == "bot" and agent.get("id") == self.bot_id:
                    await self.take(conversation)
                elif event in ("assigned", "handed_off", "agent_left", "transferred", "closed", "reopened"):
                    self.held.pop(conversation, None)
            elif sender.get("role") == "visitor" and conversation in self.held:
                await self.answer(record)
        except CallError as err:
            if err.temporary:
                log.warning("answer later (%s seq %s): %s", conversation, record.get("seq"), err)
                await message.nak(delay=RETRY_DELAY)
                return
            log.info("not answered (%s seq %s): %s", conversation, record.get("seq"), err)
            if err.code == "not_owner":
                self.held.pop(conversation, None)
        await message.ack()

    async def answer(self, record: dict) -> None:
        """Answers one visitor message, keyed by its seq."""
        conversation, seq = record["conversation_id"], record["seq"]
        text = record["body"].get("text", "")
        key = f"re-{seq}"
        decision, answer = self.faq.decide(text)
        if decision == MISS:
            held = self.held.setdefault(conversation, Held())
            held.missed.add(seq)
            if len(held.missed) >= MISSES_BEFORE_HANDOFF:
                decision = HAND_OFF
        if decision == ANSWER:
            sent = await self.api.send(conversation, answer, key)
            log.info("answered %s seq %s (seq %s, duplicate %s)", conversation, seq, sent["seq"], sent["duplicate"])
        elif decision == MISS:
            await self.api.send(conversation, self.faq.fallback, key)
            log.info("not understood %s seq %s", conversation, seq)
        else:
            await self.api.send(conversation, self.faq.handoff, key)
            try:
                await self.api.hand_off(conversation)
            except CallError as err:
                if err.code != "not_owner":  # handed off already (the visitor asked)
                    raise
            self.held.pop(conversation, None)
            log.info("handed off %s at seq %s", conversation, seq)


# ---------------------------------------------------------------- main


def settings(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Switchboard FAQ bot (docs/bots.md)")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL") or "nats://127.0.0.1:4222")
    parser.add_argument("--bot-id", default=os.environ.get("BOT_ID"))
    parser.add_argument("--faq-file", default=os.environ.get("FAQ_FILE"))
    args = parser.parse_args(argv)
    if not args.bot_id:
        parser.error("BOT_ID is not set")
    if not BOT_ID.match(args.bot_id):
        parser.error("BOT_ID may only contain letters, digits, '-' and '_' (1-64)")
    if not args.faq_file:
        parser.error("FAQ_FILE is not set")
    return args


async def main(argv: list[str]) -> int:
    args = settings(argv)
    try:
        faq = Faq.load(args.faq_file)
    except FaqError as err:
        print(f"faq_bot: FAQ_FILE: {err}", file=sys.stderr)
        return 2
    options = {"name": f"bot-{args.bot_id}", "max_reconnect_attempts": -1}
    if os.environ.get("NATS_CREDS"):
        options["user_credentials"] = os.environ["NATS_CREDS"]
    if os.environ.get("NATS_INBOX_PREFIX"):
        options["inbox_prefix"] = os.environ["NATS_INBOX_PREFIX"]
    try:
        nc = await nats.connect(args.nats_url, **options)
    except Exception as err:
        print(f"faq_bot: connect to NATS: {err}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Bot(nc, args.bot_id, faq, os.environ.get("BOT_INSTANCE")).run(stop)
    except Exception as err:
        log.error("bot stopped: %s", err)
        return 1
    finally:
        await nc.drain()
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(asyncio.run(main(sys.argv[1:])))
