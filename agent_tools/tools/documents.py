"""get_document_link: a 15-minute download link to one of the customer's own documents (KYC summary, dispute
letters, reviews), under the caller's own prefix only. Documents are sealed under the customer's key, so the
link names the MCP HTTP server's download route (a signed token for that one document version; the server opens
it and serves the plaintext, audited per download); a legacy unsealed object gets a presigned S3 URL (in the S3
access log). On stdio without `KREDETE_PUBLIC_BASE_URL` there is no route to name: a sealed document gets a clear
error instead of a link to ciphertext. The link, not the document, goes to the agent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent_tools.common import ToolInput
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import UserScope, one_user
from guards.principal import Role


class GetDocumentLinkInput(ToolInput):
    """A download link to one of your documents."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"document_id": "kyc/kyc-summary.txt"}]})

    document_id: str = Field(min_length=3, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
                             description="The document's path among your documents (e.g. kyc/kyc-summary.txt), or "
                                         "the source_id search_knowledge cites for it (users/<you>/...).")


class DocumentLinkOut(BaseModel):
    document_id: str
    title: str
    content_type: str
    size_bytes: int
    #: Anyone holding it can download this one document until `expires_at`: the server's download route (sealed
    #: documents, served decrypted) or a presigned S3 GET URL (legacy unsealed objects).
    url: str
    expires_at: datetime


async def get_document_link(args: GetDocumentLinkInput, ctx: ToolContext[UserScope]) -> DocumentLinkOut:
    own = f"users/{ctx.scope.user_id}/"
    # A cited source_id names the whole key: only the caller's own prefix is taken off; any other key stays as
    # it is and is then no document of theirs (refused like a missing one).
    document_id = args.document_id.removeprefix(own)
    link = await ctx.repos.documents.link(ctx.scope.user_id, document_id, link_id=ctx.call.request_id)
    return DocumentLinkOut(document_id=link.document_id, title=link.title, content_type=link.content_type,
                           size_bytes=link.size_bytes, url=link.url, expires_at=link.expires_at)


def render_document_link(p: dict[str, Any]) -> str:
    return (f"Download link for {p.get('title') or p['document_id']} ({p['size_bytes']} bytes), valid until "
            f"{p['expires_at']}; share it only with the customer.")


GET_DOCUMENT_LINK = ToolSpec(
    name="get_document_link", title="Document download link",
    description="A download link (valid 15 minutes) to one of the customer's own documents, named by its path "
                "(kyc/kyc-summary.txt) or by the source_id search_knowledge cites; the link serves the document "
                "decrypted. Another user's document is answered like a missing one.",
    input_model=GetDocumentLinkInput, output_model=DocumentLinkOut, handler=get_document_link,
    grant={Role.CUSTOMER}, scope=one_user(None), render=render_document_link)
