DROP TABLE replicas;
DROP TABLE deployments;
DROP TABLE nodes;
DROP TABLE cluster;
