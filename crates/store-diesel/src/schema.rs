//! Diesel's view of the tables created by `migrations/sqlite` and `migrations/postgres` (the
//! same tables and types in both).

diesel::table! {
    cluster (singleton) {
        singleton -> Integer,
        id -> Text,
        revision -> BigInt,
        nodes_version -> BigInt,
    }
}

diesel::table! {
    nodes (name) {
        name -> Text,
        address -> Text,
        capacity -> BigInt,
        available -> BigInt,
        status -> Text,
        last_heartbeat_ms -> Nullable<BigInt>,
        labels -> Text,
        public_host -> Nullable<Text>,
        engine_cpus -> Nullable<BigInt>,
        engine_memory_bytes -> Nullable<BigInt>,
        memory_reserved -> BigInt,
        nano_cpus_reserved -> BigInt,
    }
}

diesel::table! {
    deployments (name) {
        name -> Text,
        replicas -> BigInt,
        units -> BigInt,
        version -> BigInt,
        created_at_ms -> BigInt,
        updated_at_ms -> BigInt,
        template -> Text,
        revision -> BigInt,
        unplaced -> BigInt,
        unplaced_reason -> Nullable<Text>,
        crash_restarts -> BigInt,
        crash_exit_code -> Nullable<BigInt>,
        crash_last_ms -> Nullable<BigInt>,
        crash_retry_at_ms -> Nullable<BigInt>,
        policy -> Text,
        rollout_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    deployment_revisions (deployment, revision) {
        deployment -> Text,
        revision -> BigInt,
        template -> Text,
        created_at_ms -> BigInt,
        created_by -> Nullable<Text>,
        cause -> Nullable<Text>,
        restores -> Nullable<BigInt>,
        image_digest -> Nullable<Text>,
    }
}

diesel::table! {
    replicas (id) {
        id -> BigInt,
        deployment -> Text,
        node -> Text,
        units -> BigInt,
        container_id -> Nullable<Text>,
        state -> Text,
        created_at_ms -> BigInt,
        revision -> BigInt,
        health -> Nullable<Text>,
        memory_bytes -> BigInt,
        nano_cpus -> BigInt,
        ports -> Text,
        started_at_ms -> Nullable<BigInt>,
        health_at_ms -> Nullable<BigInt>,
        deregistered_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    rollouts (id) {
        id -> BigInt,
        deployment -> Text,
        from_revision -> BigInt,
        to_revision -> BigInt,
        restores -> Nullable<BigInt>,
        state -> Text,
        reason -> Nullable<Text>,
        updated -> BigInt,
        healthy -> BigInt,
        failed -> BigInt,
        started_at_ms -> BigInt,
        finished_at_ms -> Nullable<BigInt>,
        policy -> Text,
        pulled_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    replica_exits (replica) {
        replica -> BigInt,
        deployment -> Text,
        node -> Text,
        revision -> BigInt,
        started_at_ms -> Nullable<BigInt>,
        ended_at_ms -> BigInt,
        reason -> Text,
        exit_code -> Nullable<BigInt>,
        detail -> Nullable<Text>,
        logs -> Text,
    }
}

diesel::table! {
    node_ports (port, protocol, node) {
        port -> Integer,
        protocol -> Text,
        node -> Text,
        replica -> BigInt,
    }
}

diesel::joinable!(replicas -> deployments (deployment));
diesel::joinable!(replicas -> nodes (node));
diesel::allow_tables_to_appear_in_same_query!(
    cluster,
    nodes,
    deployments,
    deployment_revisions,
    replicas,
    node_ports,
    rollouts,
    replica_exits,
    registries,
    tokens,
    audit,
    lease,
    events
);

diesel::table! {
    registries (server) {
        server -> Text,
        username -> Text,
        sealed -> Text,
        updated_at_ms -> BigInt,
    }
}

diesel::table! {
    tokens (id) {
        id -> Text,
        role -> Text,
        digest -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    audit (seq) {
        seq -> BigInt,
        at_ms -> BigInt,
        token_id -> Text,
        action -> Text,
        status -> Integer,
    }
}

diesel::table! {
    lease (singleton) {
        singleton -> Integer,
        holder -> Text,
        term -> BigInt,
        expires_at_ms -> BigInt,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        at_ms -> BigInt,
        kind -> Text,
        node -> Nullable<Text>,
        deployment -> Nullable<Text>,
        replica -> Nullable<BigInt>,
        message -> Text,
    }
}
