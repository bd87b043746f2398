DROP TABLE replica_exits;
