-- Call quality per leg, measured by the relay (NULL when nothing was measured).
ALTER TABLE cdrs ADD COLUMN a_loss_pct REAL;
ALTER TABLE cdrs ADD COLUMN a_jitter_ms REAL;
ALTER TABLE cdrs ADD COLUMN a_rtt_ms REAL;
ALTER TABLE cdrs ADD COLUMN a_mos REAL;
ALTER TABLE cdrs ADD COLUMN b_loss_pct REAL;
ALTER TABLE cdrs ADD COLUMN b_jitter_ms REAL;
ALTER TABLE cdrs ADD COLUMN b_rtt_ms REAL;
ALTER TABLE cdrs ADD COLUMN b_mos REAL;
