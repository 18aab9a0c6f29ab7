/** One node of `EXPLAIN (FORMAT JSON)`'s plan tree, as far as the plan tests read it. */
export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** The plan's nodes that read a relation, as `<node type> on <relation>`, depth first. */
export function scans(plan: PlanNode): string[] {
  const own = plan['Relation Name'] === undefined ? [] : [`${plan['Node Type']} on ${plan['Relation Name']}`];
  return [...own, ...(plan.Plans ?? []).flatMap(scans)];
}
