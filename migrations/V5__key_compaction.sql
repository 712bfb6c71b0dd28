-- Key compaction: how far each partition has been judged. Records below cleaned_through were
-- compared against every later key up to it; the dirty part, which the next compaction pass
-- reads into its key map, starts here. Advanced only with the index rows a pass swaps, by
-- compare-and-swap, so two compactors never both clean the same part.
ALTER TABLE partitions
    ADD COLUMN cleaned_through bigint NOT NULL DEFAULT 0 CHECK (cleaned_through >= 0);
