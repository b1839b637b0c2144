"""Every projection the project keeps, by name, with the tables it owns.

The read models move together in one ``FollowerGroup`` (one database
transaction per batch), so queries and reconciliation always find them at one
common position. The global chain is tamper evidence, not a read model: it
follows the log on its own and is rebuilt only when named explicitly. The
Merkle tree follows the log on its own too (its leaves are every event, not
whole transactions), and is rebuilt with the read models.
"""

from __future__ import annotations

from sqlalchemy import Table

from projections.read_models.accounts import AccountsProjection
from projections.read_models.event_feed import EventFeedProjection
from projections.following.follower import Projection, projection_tracking
from projections.jobs.global_chain import GlobalChainProjection, ledger_chain
from projections.jobs.merkle_tree import MerkleTreeProjection
from projections.read_models.monthly import MonthlySnapshotsProjection
from projections.read_models.recurring import RecurringTransactionsProjection
from projections.read_models.statements import StatementsProjection
from projections.read_models.tenant_directory import TenantDirectoryProjection, tenant_directory
from projections.read_models.transactions import TransactionsProjection

GLOBAL_CHAIN = GlobalChainProjection.name
ACCOUNTS = AccountsProjection.name
STATEMENTS = StatementsProjection.name
TRANSACTIONS = TransactionsProjection.name
MONTHLY_SNAPSHOTS = MonthlySnapshotsProjection.name
TENANT_DIRECTORY = TenantDirectoryProjection.name  # the HTTP API's tenant queries (issue 3)
RECURRING = RecurringTransactionsProjection.name  # standing orders (docs/jobs.md)
EVENT_FEED = EventFeedProjection.name  # GET /v1/events and its stream (docs/events-out.md)
MERKLE_TREE = MerkleTreeProjection.name  # proofs over the global log (docs/proofs.md)

READ_MODELS: tuple[str, ...] = (ACCOUNTS, STATEMENTS, TRANSACTIONS, MONTHLY_SNAPSHOTS, TENANT_DIRECTORY, RECURRING,
                             EVENT_FEED)
ALL_PROJECTIONS: tuple[str, ...] = (GLOBAL_CHAIN, MERKLE_TREE, *READ_MODELS)
# What 'invario projections rebuild --all' replays: the read models, and the Merkle tree, whose
# signed checkpoints (kept) anchor it, so 'invario verify' notices a rebuild that came out different.
REBUILT_BY_ALL: tuple[str, ...] = (MERKLE_TREE, *READ_MODELS)
READ_MODELS_GROUP = "read_models"

_TABLES: dict[str, tuple[Table, ...]] = {
    GLOBAL_CHAIN: (ledger_chain,),
    MERKLE_TREE: MerkleTreeProjection.tables,
    ACCOUNTS: AccountsProjection.tables,
    STATEMENTS: StatementsProjection.tables,
    TRANSACTIONS: TransactionsProjection.tables,
    MONTHLY_SNAPSHOTS: MonthlySnapshotsProjection.tables,
    TENANT_DIRECTORY: (tenant_directory,),
    RECURRING: RecurringTransactionsProjection.tables,
    EVENT_FEED: EventFeedProjection.tables,
}
TRACKING_TABLE = projection_tracking


def make_projection(name: str) -> Projection:
    factories = {
        GLOBAL_CHAIN: GlobalChainProjection,
        MERKLE_TREE: MerkleTreeProjection,
        ACCOUNTS: AccountsProjection,
        STATEMENTS: StatementsProjection,
        TRANSACTIONS: TransactionsProjection,
        MONTHLY_SNAPSHOTS: MonthlySnapshotsProjection,
        TENANT_DIRECTORY: TenantDirectoryProjection,
        RECURRING: RecurringTransactionsProjection,
        EVENT_FEED: EventFeedProjection,
    }
    return factories[name]()


def read_model_projections() -> list[Projection]:
    return [make_projection(name) for name in READ_MODELS]


def tables_of(name: str) -> tuple[Table, ...]:
    return _TABLES[name]
