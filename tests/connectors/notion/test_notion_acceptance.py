"""The framework's connector acceptance tests (engram_sdk.testing), run on the Notion connector."""

from __future__ import annotations

from notion_data import BASE, TOKEN, flat_workspace, iso, pid

from engram_notion import NotionConnector, confirm_webhook_verification, reveal_verification_token
from engram_notion.sandbox import NotionSandbox
from engram_sdk.testing import ConnectorAcceptanceTests


class TestNotionAcceptance(ConnectorAcceptanceTests):
    platform = "notion"
    connector_cls = NotionConnector
    scope = "all"
    token = TOKEN
    webhooks = True
    webhook_secret = "secret_notion_verification_token_for_the_kit"

    def make_sandbox(self, clock):
        return NotionSandbox(flat_workspace(30), clock=clock)

    def connection_config(self, server):
        # a subprocess (the kill test) runs on the real clock: no client-side throttling there
        return {"base_url": server.url, "token": TOKEN, "requests_per_second": 1000}

    def edit(self, admin):
        admin.op("set_time", time=iso(BASE))
        admin.op("edit_page", id=pid(3), text="Edited for the acceptance suite")
        admin.op("add_comment", parent_id=pid(5), text="A new question")
        return [pid(3)]

    def delete(self, admin):
        admin.op("set_time", time=iso(BASE))
        admin.op("trash_page", id=pid(4))
        return [pid(4)]

    def enlarge(self, admin):
        admin.op("generate", count=150)

    def configure_webhooks(self, admin, url, secret):
        admin.set_webhook(url, secret)
        admin.op("send_verification")  # the receiver keeps the first token while the connection awaits it
        admin.deliveries()
        return {}

    def confirm_webhooks(self, harness):
        # the operator pasted the token into Notion, which accepted it
        assert reveal_verification_token(harness.secrets, self.connection_name) == self.webhook_secret
        confirm_webhook_verification(harness.store, self.connection_name)
