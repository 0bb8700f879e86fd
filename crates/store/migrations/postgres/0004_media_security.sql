-- Per-user SRTP policy: 'off' (plain RTP only), 'optional' (accepts SRTP offers; offered
-- plain RTP), 'required' (encrypted media only, both ways).
ALTER TABLE users ADD COLUMN srtp TEXT NOT NULL DEFAULT 'optional';
-- How the user's phones want DTMF digits: 'auto', 'rfc4733', 'info' or 'inband'.
ALTER TABLE users ADD COLUMN dtmf TEXT NOT NULL DEFAULT 'auto';
-- The SRTP suite each leg of a call used (NULL: plain RTP), and the packets whose
-- authentication or replay check failed.
ALTER TABLE cdrs ADD COLUMN a_srtp TEXT;
ALTER TABLE cdrs ADD COLUMN b_srtp TEXT;
ALTER TABLE cdrs ADD COLUMN a_srtp_rejected BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN b_srtp_rejected BIGINT NOT NULL DEFAULT 0;
