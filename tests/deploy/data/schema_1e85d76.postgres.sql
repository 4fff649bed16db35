-- The metadata schema as of commit 1e85d76 (SQLModel create_all, before versioned migrations).
CREATE TABLE api_key (
	key_id VARCHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	scopes VARCHAR NOT NULL, 
	key_hash VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked BOOLEAN NOT NULL, 
	PRIMARY KEY (key_id)
);

CREATE TABLE transform_schema (
	id SERIAL NOT NULL, 
	name VARCHAR(127) NOT NULL, 
	version INTEGER NOT NULL, 
	yaml_text VARCHAR NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_transform_schema_name_version UNIQUE (name, version)
);

CREATE INDEX ix_transform_schema_name ON transform_schema (name);

CREATE TABLE transform_run (
	id VARCHAR(64) NOT NULL, 
	request_id VARCHAR(64), 
	job_id INTEGER, 
	loader_run_id INTEGER, 
	table_name VARCHAR(127) NOT NULL, 
	schema_version INTEGER NOT NULL, 
	dt DATE NOT NULL, 
	hour INTEGER, 
	engine VARCHAR(16) NOT NULL, 
	source_bucket VARCHAR NOT NULL, 
	source_prefix VARCHAR NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	rows_in INTEGER, 
	rows_out INTEGER, 
	rows_bad INTEGER, 
	bytes_in INTEGER, 
	bytes_out INTEGER, 
	duration_s FLOAT, 
	engine_run_id VARCHAR, 
	engine_state VARCHAR, 
	engine_states VARCHAR NOT NULL, 
	log_url VARCHAR, 
	manifest_key VARCHAR, 
	bad_rows_key VARCHAR, 
	advertising_view_key VARCHAR, 
	error VARCHAR, 
	outcome_sent BOOLEAN NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_transform_run_state ON transform_run (state);

CREATE INDEX ix_transform_run_table_name ON transform_run (table_name);

CREATE INDEX ix_transform_run_dt ON transform_run (dt);

CREATE INDEX ix_transform_run_request_id ON transform_run (request_id);

CREATE TABLE loader_job (
	id SERIAL NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	schema_name VARCHAR(127) NOT NULL, 
	schema_version INTEGER NOT NULL, 
	source VARCHAR(1024) NOT NULL, 
	start_date DATE NOT NULL, 
	end_date DATE, 
	warehouse VARCHAR(16) NOT NULL, 
	engine VARCHAR(16) NOT NULL, 
	table_name VARCHAR(63) NOT NULL, 
	emails VARCHAR NOT NULL, 
	retention_days INTEGER, 
	state VARCHAR(16) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_loader_job_name ON loader_job (name);

CREATE INDEX ix_loader_job_state ON loader_job (state);

CREATE TABLE loader_job_run (
	id SERIAL NOT NULL, 
	job_id INTEGER NOT NULL, 
	dt DATE NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	error VARCHAR, 
	next_attempt_at TIMESTAMP WITH TIME ZONE, 
	transform_id VARCHAR, 
	rows_in INTEGER, 
	rows_bad INTEGER, 
	rows_loaded INTEGER, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	transform_started_at TIMESTAMP WITH TIME ZONE, 
	load_started_at TIMESTAMP WITH TIME ZONE, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_loader_run_job_dt UNIQUE (job_id, dt)
);

CREATE INDEX ix_loader_job_run_state ON loader_job_run (state);

CREATE INDEX ix_loader_job_run_job_id ON loader_job_run (job_id);

CREATE TABLE loader_run_event (
	id SERIAL NOT NULL, 
	job_id INTEGER NOT NULL, 
	dt DATE NOT NULL, 
	event VARCHAR(32) NOT NULL, 
	detail VARCHAR NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_loader_run_event_job_id ON loader_run_event (job_id);

CREATE TABLE replay_job (
	id VARCHAR(40) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	target_stream VARCHAR(128) NOT NULL, 
	dry_run BOOLEAN NOT NULL, 
	request_json VARCHAR NOT NULL, 
	created_by VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	total INTEGER, 
	read INTEGER NOT NULL, 
	emitted INTEGER NOT NULL, 
	failed INTEGER NOT NULL, 
	error VARCHAR, 
	summary_json VARCHAR, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_replay_job_created_at ON replay_job (created_at);

CREATE INDEX ix_replay_job_state ON replay_job (state);
