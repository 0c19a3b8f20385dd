"""The request and response bodies of the ledger and private-details endpoints, as
pydantic models; the OpenAPI document is generated from them (``node.api.document``).

Request models parse the body (``node.api.input.JsonBody``): their field types
(``node.api.fields``) check each field as the API always has. Response models describe
what the handlers send, field by field (required, nullable, or present only sometimes:
``Omitted``); the handlers build their answers as plain dicts, so a big answer is not
validated again on its way out.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    RootModel,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from node.api.fields import (
    DEFAULT_WAIT_S,
    DIGEST_SCHEMA,
    HEX_SCHEMA,
    NOT_AN_OBJECT,
    DigestHex,
    Flag,
    TxHex,
    WaitSeconds,
    refused,
)
from node.details.records import (
    MAX_DETAILS_BYTES,
    MAX_FIELDS,
    MAX_KEY_CHARS,
    MAX_VALUE_CHARS,
    Details,
    encode_details,
)

MAX_BATCH = 1000

# A field that is either there with a value of its type or left out (never null).
Omitted = SkipJsonSchema[None]
DigestStr = Annotated[str, WithJsonSchema(DIGEST_SCHEMA)]
HexStr = Annotated[str, WithJsonSchema(HEX_SCHEMA)]
Count = Annotated[int, Field(ge=0)]


def one_of(values: tuple[str, ...] | list[str]) -> WithJsonSchema:
    """The schema of a string that is one of ``values`` (known only at run time)."""
    return WithJsonSchema({"type": "string", "enum": list(values)})


# ------------------------------------------------------------------ requests


class JsonObject(BaseModel):
    """A request object: these fields and no others, and null is not "left out" (an
    optional field is either absent or given a value of its type).

    Its shape is checked before its fields, with the API's messages: not an object,
    unexpected fields (naming the fields), a required one missing. A model may say all
    of that in one message instead (``shape_message``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shape_message: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        fields = cls.model_fields
        if not isinstance(data, dict):
            raise refused("bad_request", cls.shape_message or NOT_AN_OBJECT)
        if not data.keys() <= fields.keys():
            names = ", ".join(fields)
            raise refused(
                "bad_request", cls.shape_message or f"unexpected fields; the fields are {names}"
            )
        for name, field in fields.items():
            if field.is_required() and name not in data:
                raise refused("bad_request", cls.shape_message or f"{name} is required")
        return data


class EmptyRequest(JsonObject):
    """No fields: the body is ``{}`` or empty."""


def _batch(value: object) -> object:
    if not isinstance(value, list) or not value:
        raise refused("bad_request", '"txs" must be a non-empty list of hex strings')
    if len(value) > MAX_BATCH:
        raise refused("too_many_txs", f"at most {MAX_BATCH} transactions per request")
    return value


class SingleTx(JsonObject):
    tx: TxHex


class TxBatch(JsonObject):
    txs: Annotated[list[TxHex], Field(min_length=1, max_length=MAX_BATCH), BeforeValidator(_batch)]


def _submit_kind(value: Any) -> str | None:
    # One field, "tx" or "txs"; nothing else, so a typo in a field name is an error
    # rather than a silently empty submission.
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("tx", "txs"):
        return str(next(iter(value)))
    return None


class SubmitRequest(
    RootModel[
        Annotated[
            Annotated[SingleTx, Tag("tx")] | Annotated[TxBatch, Tag("txs")],
            Discriminator(
                _submit_kind,
                custom_error_type="bad_request",
                custom_error_message='expected an object with one field: "tx" or "txs"',
            ),
        ]
    ]
):
    """``{"tx": hex}`` or ``{"txs": [hex, ...]}`` (up to 1000)."""

    @property
    def txs(self) -> list[bytes]:
        return [self.root.tx] if isinstance(self.root, SingleTx) else self.root.txs


class WaitQuery(BaseModel):
    """``wait`` and ``timeout`` of a submission."""

    wait: Flag = Field(False, description="Answer once the transaction is committed.")
    timeout: WaitSeconds = Field(
        DEFAULT_WAIT_S, description="Seconds to wait for commitment (with `wait`)."
    )


def _details(value: object) -> Details:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise refused("bad_details", "details must be an object of text fields")
    try:
        details = Details.of(value)
        encode_details(details)
    except ValueError as exc:
        raise refused("bad_details", str(exc)) from None
    return details


def _member_names(value: object) -> list[str] | None:
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(n, str) for n in value)
    ):
        raise refused("bad_request", "share_with must be a list of member names")
    return value


# Limits as in ``node.details.records``.
DETAIL_FIELDS_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": MAX_FIELDS,
    "propertyNames": {"pattern": f"^[a-z][a-z0-9_]{{0,{MAX_KEY_CHARS - 1}}}$"},
    "additionalProperties": {"type": "string", "maxLength": MAX_VALUE_CHARS},
    "description": f"Text fields; at most {MAX_DETAILS_BYTES} bytes in their canonical encoding.",
}
DetailFields = Annotated[dict[str, str], WithJsonSchema(DETAIL_FIELDS_SCHEMA)]


class DetailsRequest(JsonObject):
    """A signed report or link and the private details it commits to. Values are never
    quoted back: they are private."""

    shape_message = 'expected an object with "tx", "salt", "details" and optionally "share_with"'

    tx: TxHex = Field(description="the signed report or link, committing to the details")
    salt: DigestHex = Field(description="the 32-byte salt of the commitment")
    details: Annotated[Details, PlainValidator(_details), WithJsonSchema(DETAIL_FIELDS_SCHEMA)]
    share_with: Annotated[list[str] | None, BeforeValidator(_member_names)] = Field(
        None,
        description="member names; the submitter is always included. Default: the members "
        "with the investigator role. Never written to the ledger.",
    )


# ------------------------------------------------------------------ responses


class Error(BaseModel):
    """Every refusal: a stable code and a message; some carry more fields."""

    error: str = Field(description="A stable, machine-readable code.")
    message: str = Field(description="What went wrong, for a person.")


class Peer(BaseModel):
    index: Count
    name: str
    address: str
    connected: bool | None = Field(description="null when the transport cannot tell")
    direction: Literal["inbound", "outbound"] | None
    since: float | None = Field(description="Unix time (s) of the last connect or disconnect")
    sessions: Count | None
    queued: Count | None = Field(description="frames waiting in the send queue")
    last_error: str | None


class MemberRef(BaseModel):
    name: str
    index: Count


class Mempool(BaseModel):
    txs: Count
    bytes: Count


class Status(BaseModel):
    chain_id: str
    member: MemberRef
    height: Count = Field(description="height of the last stored block")
    tip_hash: DigestStr
    consensus_height: Count = Field(
        description="height consensus has executed; may briefly lead `height`"
    )
    view: Count | None
    view_active: bool | None
    primary: Count | None
    stable_checkpoint: Count | None
    mempool: Mempool
    peers: list[Peer]


class SubmitResult(BaseModel):
    tx_id: DigestStr
    accepted: bool
    code: str = Field(description="`accepted`, or why the tx was refused")
    message: str
    committed: bool | Omitted = Field(None, description="only with `wait`")
    height: Count | Omitted = Field(None, description="only once committed")
    index: Count | Omitted = Field(None, description="only once committed")


class SubmitResponse(BaseModel):
    results: list[SubmitResult]


class Rejected(Error):
    """No transaction was accepted; `results` says why for each."""

    results: list[SubmitResult]


class Envelope(BaseModel):
    chain_id: str
    member: str
    signer_key: HexStr
    nonce: Count
    time_ms: Count
    kind: str


class Transaction(BaseModel):
    tx_id: DigestStr
    status: Literal["committed", "pending"]
    tx: HexStr
    height: Count | Omitted = None
    index: Count | Omitted = None
    envelope: Envelope | Omitted = None


class BlockHeader(BaseModel):
    chain_id: str
    height: Count
    timestamp_ms: Count
    tx_count: Count
    tx_root: DigestStr
    parent_hash: DigestStr


class Signer(BaseModel):
    index: Count
    name: str | None
    signature: HexStr


class Certificate(BaseModel):
    view: Count
    height: Count
    digest: DigestStr
    signers: list[Signer]


class Block(BaseModel):
    height: Count
    hash: DigestStr
    header: BlockHeader
    tx_ids: list[DigestStr]
    certificate: Certificate


MemberNames = list[str]


class DetailsResult(SubmitResult):
    shared_with: MemberNames = Field(
        description="the recipients, in genesis order, this member included"
    )


class DetailsSubmitResponse(BaseModel):
    results: Annotated[list[DetailsResult], Field(min_length=1, max_length=1)]


class DetailsRejected(Error):
    """The transaction was refused; the details were not kept."""

    results: Annotated[list[DetailsResult], Field(min_length=1, max_length=1)]


class PrivateDetails(BaseModel):
    tx_id: DigestStr
    details: DetailFields
    salt: DigestStr
    sender: str = Field(description="the member that signed the transaction and sent them")
    stored_ms: Count = Field(description="Unix time (ms) they were stored here")
    commitment: DigestStr | None = Field(
        description="the commitment on this node's ledger; null until committed here"
    )
    height: Count | None
    matches_commitment: bool | None = Field(
        description="whether salt and details give the on-ledger commitment"
    )
    shared_with: MemberNames = Field(
        description="on the submitting node only: the recipients it named"
    )
    undelivered: MemberNames = Field(
        description="on the submitting node only: recipients yet to acknowledge"
    )


class DetailsNotHeld(Error):
    """Why this node shows no details: `not_found` (no such committed transaction),
    `no_commitment` (it commits to none), `not_entitled` (this member is not a recipient,
    or they have not arrived), `pending` (they arrived before the transaction committed
    here), `deleted` (by retention; the commitment stays)."""

    error: Literal["not_found", "no_commitment", "not_entitled", "pending", "deleted"]


def answer(model: Any, description: str, **more: Any) -> dict[str, Any]:
    """One entry of a route's ``responses``: the model of the body, and what it means."""
    return {"model": model, "description": description, **more}


def refusal(description: str) -> dict[str, Any]:
    """A refusal's entry in a route's ``responses``: the error object."""
    return answer(Error, description)


BAD_INPUT = refusal("The request is malformed (the `error` code says how).")
