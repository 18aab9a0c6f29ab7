import type pg from 'pg';

/**
 * Makes every DELETE statement on `dlqTable` after the first `allowed` fail (a statement-level
 * trigger counting with a sequence, which a rollback does not reset): a redrive or purge whose
 * later batch fails after its first ones committed, as a statement timeout or a lost connection
 * would make it. A filter's pass ends with a batch that picks nothing, whose DELETE still fires
 * the trigger, so `allowed: 1` fails the second batch whatever the first one took. Returns the undo.
 */
export async function failDlqDeletesAfter(pool: pg.Pool, dlqTable: string, allowed: number): Promise<() => Promise<void>> {
  const name = `${dlqTable}_fault`;
  await pool.query(`CREATE SEQUENCE ${name}_n`);
  await pool.query(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval('${name}_n') > ${allowed} THEN RAISE EXCEPTION 'batch refused for the test'; END IF;
      RETURN NULL;
    END $$`);
  await pool.query(`CREATE TRIGGER fault AFTER DELETE ON ${dlqTable} FOR EACH STATEMENT EXECUTE FUNCTION ${name}()`);
  return async () => {
    await pool.query(`DROP TRIGGER fault ON ${dlqTable}`);
    await pool.query(`DROP FUNCTION ${name}()`);
    await pool.query(`DROP SEQUENCE ${name}_n`);
  };
}
