-- The health check's verdict as the engines last reported it (NULL: none seen, or no check).
ALTER TABLE replicas ADD COLUMN health TEXT CHECK (health IN ('starting', 'healthy', 'unhealthy'));
