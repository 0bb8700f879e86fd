-- Where a recorded call's audio is (NULL: not recorded).
ALTER TABLE cdrs ADD COLUMN recording TEXT;
