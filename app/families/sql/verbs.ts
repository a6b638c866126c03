// `sql.verb`: the one lower-case word an operator writes in a rule, from the
// parse-tree node kind of a statement. The table names every statement kind
// of PostgreSQL 18's raw grammar; a kind missing from it (a newer parser)
// gets the first word of its node name, lower-cased ("FooBarStmt" -> "foo"),
// which for the grammar's naming (CreateXStmt, AlterXStmt, DropXStmt) is the
// SQL command's own first word.

const VERB_BY_KIND: Readonly<Record<string, string>> = {
  SelectStmt: "select",
  InsertStmt: "insert",
  UpdateStmt: "update",
  DeleteStmt: "delete",
  MergeStmt: "merge",
  // PL/pgSQL-only parse modes; here for completeness.
  ReturnStmt: "return",
  PLAssignStmt: "select",
  SetOperationStmt: "select", // after analysis only; a raw UNION is a SelectStmt

  CreateSchemaStmt: "create",
  CreateStmt: "create",
  CreateTableSpaceStmt: "create",
  CreateExtensionStmt: "create",
  CreateFdwStmt: "create",
  CreateForeignServerStmt: "create",
  CreateForeignTableStmt: "create",
  CreateUserMappingStmt: "create",
  CreatePolicyStmt: "create",
  CreateAmStmt: "create",
  CreateTrigStmt: "create",
  CreateEventTrigStmt: "create",
  CreatePLangStmt: "create",
  CreateRoleStmt: "create",
  CreateSeqStmt: "create",
  DefineStmt: "create", // CREATE AGGREGATE / OPERATOR / TYPE / COLLATION / TEXT SEARCH ...
  CreateDomainStmt: "create",
  CreateOpClassStmt: "create",
  CreateOpFamilyStmt: "create",
  IndexStmt: "create",
  CreateStatsStmt: "create",
  CreateFunctionStmt: "create", // also PROCEDURE
  RuleStmt: "create",
  CompositeTypeStmt: "create",
  CreateEnumStmt: "create",
  CreateRangeStmt: "create",
  ViewStmt: "create",
  CreatedbStmt: "create",
  CreateTableAsStmt: "create", // also CREATE MATERIALIZED VIEW, SELECT INTO (see facets.ts)
  CreateConversionStmt: "create",
  CreateCastStmt: "create",
  CreateTransformStmt: "create",
  CreatePublicationStmt: "create",
  CreateSubscriptionStmt: "create",
  ImportForeignSchemaStmt: "import",

  AlterTableStmt: "alter",
  ReplicaIdentityStmt: "alter",
  AlterCollationStmt: "alter",
  AlterDomainStmt: "alter",
  AlterDefaultPrivilegesStmt: "alter",
  AlterTableSpaceOptionsStmt: "alter",
  AlterTableMoveAllStmt: "alter",
  AlterExtensionStmt: "alter",
  AlterExtensionContentsStmt: "alter",
  AlterFdwStmt: "alter",
  AlterForeignServerStmt: "alter",
  AlterUserMappingStmt: "alter",
  AlterPolicyStmt: "alter",
  AlterEventTrigStmt: "alter",
  AlterRoleStmt: "alter",
  AlterRoleSetStmt: "alter",
  AlterSeqStmt: "alter",
  AlterOpFamilyStmt: "alter",
  AlterStatsStmt: "alter",
  AlterFunctionStmt: "alter",
  RenameStmt: "alter", // ALTER ... RENAME
  AlterObjectDependsStmt: "alter",
  AlterObjectSchemaStmt: "alter",
  AlterOwnerStmt: "alter",
  AlterOperatorStmt: "alter",
  AlterTypeStmt: "alter",
  AlterEnumStmt: "alter",
  AlterDatabaseStmt: "alter",
  AlterDatabaseRefreshCollStmt: "alter",
  AlterDatabaseSetStmt: "alter",
  AlterSystemStmt: "alter",
  AlterTSDictionaryStmt: "alter",
  AlterTSConfigurationStmt: "alter",
  AlterPublicationStmt: "alter",
  AlterSubscriptionStmt: "alter",

  DropStmt: "drop",
  DropTableSpaceStmt: "drop",
  DropUserMappingStmt: "drop",
  DropRoleStmt: "drop",
  DropdbStmt: "drop",
  DropOwnedStmt: "drop",
  DropSubscriptionStmt: "drop",
  ReassignOwnedStmt: "reassign",

  TruncateStmt: "truncate",
  CommentStmt: "comment",
  SecLabelStmt: "label", // SECURITY LABEL
  CopyStmt: "copy",
  CallStmt: "call",
  DoStmt: "do",
  VariableShowStmt: "show",
  ConstraintsSetStmt: "set", // SET CONSTRAINTS
  DeclareCursorStmt: "declare",
  ClosePortalStmt: "close",
  NotifyStmt: "notify",
  ListenStmt: "listen",
  UnlistenStmt: "unlisten",
  LoadStmt: "load",
  ClusterStmt: "cluster",
  ExplainStmt: "explain",
  RefreshMatViewStmt: "refresh",
  CheckPointStmt: "checkpoint",
  DiscardStmt: "discard",
  LockStmt: "lock",
  ReindexStmt: "reindex",
  PrepareStmt: "prepare",
  ExecuteStmt: "execute",
  DeallocateStmt: "deallocate",
};

/** TransactionStmt's `kind` (TransactionStmtKind) -> verb. */
const VERB_BY_TRANSACTION_KIND: Readonly<Record<string, string>> = {
  TRANS_STMT_BEGIN: "begin",
  TRANS_STMT_START: "begin", // START TRANSACTION
  TRANS_STMT_COMMIT: "commit",
  TRANS_STMT_ROLLBACK: "rollback",
  TRANS_STMT_SAVEPOINT: "savepoint",
  TRANS_STMT_RELEASE: "release",
  TRANS_STMT_ROLLBACK_TO: "rollback", // ROLLBACK TO SAVEPOINT
  TRANS_STMT_PREPARE: "prepare", // PREPARE TRANSACTION
  TRANS_STMT_COMMIT_PREPARED: "commit",
  TRANS_STMT_ROLLBACK_PREPARED: "rollback",
};

/** The verb of a statement node: `kind` is its node name, `body` its fields. */
export function verbOf(kind: string, body: Record<string, unknown>): string {
  switch (kind) {
    case "TransactionStmt":
      return VERB_BY_TRANSACTION_KIND[String(body.kind)] ?? "begin";
    case "VariableSetStmt":
      // RESET x / RESET ALL; SET x = DEFAULT is still a SET as written.
      return body.kind === "VAR_RESET" || body.kind === "VAR_RESET_ALL" ? "reset" : "set";
    case "GrantStmt":
    case "GrantRoleStmt":
      return body.is_grant === true ? "grant" : "revoke";
    case "VacuumStmt":
      return body.is_vacuumcmd === true ? "vacuum" : "analyze";
    case "FetchStmt":
      return body.ismove === true ? "move" : "fetch";
    case "SelectStmt":
      // SELECT ... INTO t is CREATE TABLE AS: PostgreSQL's analyzer turns it into one.
      return body.intoClause !== undefined ? "create" : "select";
  }
  return VERB_BY_KIND[kind] ?? fallbackVerb(kind);
}

/** "FooBarStmt" -> "foo": the first capitalised word of an unknown node name. */
export function fallbackVerb(kind: string): string {
  const word = /^[A-Z][a-z]*/.exec(kind)?.[0];
  return (word ?? kind).toLowerCase();
}

/** Every kind the table knows (for tests that check coverage of the grammar). */
export const KNOWN_STATEMENT_KINDS: readonly string[] = [
  ...Object.keys(VERB_BY_KIND),
  "TransactionStmt",
  "VariableSetStmt",
  "GrantStmt",
  "GrantRoleStmt",
  "VacuumStmt",
  "FetchStmt",
];
