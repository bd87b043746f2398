DROP TABLE audit; DROP TABLE tokens; DROP TABLE replicas; DROP TABLE deployments; DROP TABLE nodes; DROP TABLE cluster;
