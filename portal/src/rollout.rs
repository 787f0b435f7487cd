//! The stages of an update rollout, pure: which agents come first, how many each stage covers, and what
//! a rollout does next given where its agents' updates stand.
//!
//! - The eligible agents are put in a fixed pseudo-random order: by SHA-256 of `"<rollout id>:<agent id>"`
//!   ([`order`]), so two rollouts do not always start on the same agents, and one rollout's order never
//!   changes.
//! - Stages are cumulative percentages (`10,50,100`): stage `k` covers the first
//!   `ceil(n × pct / 100)` agents, at least 1 ([`covered`]).
//! - A stage is complete when every agent it covers has a final update state (committed, rolled back,
//!   failed). Its failure rate is the failed and rolled-back updates over the agents the stage added (not
//!   those of earlier stages, which were judged already). Above `max_failure_pct` the rollout pauses;
//!   otherwise it advances, and after the last stage it is done ([`next_step`]).

use outpost_cloud_link::update::UpdateState;
use sha2::{Digest, Sha256};

/// Why a list of stages or a threshold is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "stages: give at least one stage, e.g. [10, 50, 100] (percentages of the eligible agents)"
    )]
    NoStages,
    #[error("stages: {0} is not a percentage between 1 and 100")]
    OutOfRange(i64),
    #[error("stages: {later} does not come after {earlier}; list the percentages in strictly increasing order, e.g. [10, 50, 100]")]
    NotIncreasing { earlier: i64, later: i64 },
    #[error("stages: the last stage is {0}, but it must be 100 so every eligible agent is updated; end the list with 100")]
    LastNot100(i64),
    #[error("max_failure_pct: {0} is not a percentage between 0 and 100")]
    Threshold(i64),
}

impl PlanError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            PlanError::Threshold(_) => "max_failure_pct",
            _ => "stages",
        }
    }
}

/// Checks stages (1..=100, strictly increasing, the last 100) and returns them as percentages.
pub fn check_stages(stages: &[i64]) -> Result<Vec<u8>, PlanError> {
    let Some(&last) = stages.last() else {
        return Err(PlanError::NoStages);
    };
    for &s in stages {
        if !(1..=100).contains(&s) {
            return Err(PlanError::OutOfRange(s));
        }
    }
    for w in stages.windows(2) {
        if w[1] <= w[0] {
            return Err(PlanError::NotIncreasing {
                earlier: w[0],
                later: w[1],
            });
        }
    }
    if last != 100 {
        return Err(PlanError::LastNot100(last));
    }
    Ok(stages.iter().map(|&s| s as u8).collect())
}

/// Checks a failure threshold (0..=100).
pub fn check_threshold(pct: i64) -> Result<u8, PlanError> {
    if (0..=100).contains(&pct) {
        Ok(pct as u8)
    } else {
        Err(PlanError::Threshold(pct))
    }
}

/// The rollout's order of the agents: by SHA-256 of `"<rollout>:<agent>"` (ties, impossible in practice,
/// by id).
pub fn order(rollout: i64, agents: &[String]) -> Vec<String> {
    let mut keyed: Vec<([u8; 32], &String)> = agents
        .iter()
        .map(|a| {
            let digest: [u8; 32] = Sha256::digest(format!("{rollout}:{a}").as_bytes()).into();
            (digest, a)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, a)| a.clone()).collect()
}

/// How many of `n` agents a stage of `pct` percent covers: `ceil(n × pct / 100)`, at least 1, at most n.
pub fn covered(n: usize, pct: u8) -> usize {
    if n == 0 {
        return 0;
    }
    let c = (n * usize::from(pct)).div_ceil(100);
    c.clamp(1, n)
}

/// Where a running rollout stands: its stages, the current one, its threshold, and the update state of
/// each eligible agent in the rollout's order (`None`: no update issued yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    pub stages: &'a [u8],
    pub stage: usize,
    pub max_failure_pct: u8,
    pub states: &'a [Option<UpdateState>],
}

/// What a running rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the update to the agents at these positions (the current stage's, not issued yet).
    Issue(Vec<usize>),
    /// Updates of the current stage are still under way.
    Wait,
    /// The current stage is complete and within the threshold: go on with stage `next`.
    Advance { next: usize },
    /// The current stage is complete and too many of its updates failed.
    Pause {
        failed: usize,
        of: usize,
        pct: u8,
        reason: String,
    },
    /// The last stage is complete and within the threshold.
    Done,
}

/// The failed (failed or rolled back) updates among `states`.
pub fn failures(states: &[Option<UpdateState>]) -> usize {
    states
        .iter()
        .filter(|s| s.is_some_and(UpdateState::is_failure))
        .count()
}

/// What to do next (see the module's documentation). With `accept_failures` (a person resumed a rollout
/// paused over its threshold) a complete stage advances whatever its failure rate.
pub fn next_step(p: &Progress<'_>, accept_failures: bool) -> Step {
    let n = p.states.len();
    let stage = p.stage.min(p.stages.len().saturating_sub(1));
    let Some(&pct) = p.stages.get(stage) else {
        return Step::Done;
    };
    let upto = covered(n, pct);
    let from = if stage == 0 {
        0
    } else {
        covered(n, p.stages[stage - 1])
    };
    let missing: Vec<usize> = (0..upto).filter(|&i| p.states[i].is_none()).collect();
    if !missing.is_empty() {
        return Step::Issue(missing);
    }
    if p.states[..upto]
        .iter()
        .any(|s| !s.is_some_and(UpdateState::is_final))
    {
        return Step::Wait;
    }
    let added = &p.states[from..upto];
    let failed = failures(added);
    let of = added.len();
    // Percentages compared without rounding: failed / of > max / 100.
    if !accept_failures && of > 0 && failed * 100 > usize::from(p.max_failure_pct) * of {
        let rate = (failed * 100 / of) as u8;
        return Step::Pause {
            failed,
            of,
            pct: rate,
            reason: format!(
                "stage {} ({}%): {failed} of {of} updates failed or rolled back ({rate}%), more than the {}% allowed; look at the failed agents, then resume or cancel",
                stage + 1,
                pct,
                p.max_failure_pct
            ),
        };
    }
    if stage + 1 >= p.stages.len() {
        Step::Done
    } else {
        Step::Advance { next: stage + 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UpdateState as S;

    #[test]
    fn stages_must_increase_stay_in_range_and_end_at_100() {
        assert_eq!(check_stages(&[10, 50, 100]).unwrap(), vec![10, 50, 100]);
        assert_eq!(check_stages(&[100]).unwrap(), vec![100]);
        assert_eq!(check_stages(&[]), Err(PlanError::NoStages));
        assert_eq!(check_stages(&[0, 100]), Err(PlanError::OutOfRange(0)));
        assert_eq!(check_stages(&[50, 101]), Err(PlanError::OutOfRange(101)));
        assert_eq!(
            check_stages(&[50, 50, 100]),
            Err(PlanError::NotIncreasing {
                earlier: 50,
                later: 50
            })
        );
        assert_eq!(check_stages(&[10, 50]), Err(PlanError::LastNot100(50)));
        let e = check_stages(&[60, 20, 100]).unwrap_err();
        assert_eq!(e.field(), "stages");
        assert!(e.to_string().contains("strictly increasing"), "{e}");
        assert_eq!(check_threshold(0), Ok(0));
        assert_eq!(check_threshold(100), Ok(100));
        let e = check_threshold(101).unwrap_err();
        assert_eq!(e.field(), "max_failure_pct");
        assert!(check_threshold(-1).is_err());
    }

    #[test]
    fn stages_cover_the_ceiling_and_at_least_one_agent() {
        assert_eq!(covered(4, 50), 2);
        assert_eq!(covered(4, 100), 4);
        assert_eq!(covered(10, 10), 1);
        assert_eq!(covered(3, 10), 1);
        assert_eq!(covered(11, 10), 2);
        assert_eq!(covered(1, 1), 1);
        assert_eq!(covered(200, 1), 2);
        assert_eq!(covered(0, 50), 0);
    }

    #[test]
    fn the_order_is_fixed_per_rollout_and_differs_between_rollouts() {
        let agents: Vec<String> = (0..20).map(|i| format!("ag-{i:02}")).collect();
        let a = order(1, &agents);
        let mut shuffled = agents.clone();
        shuffled.reverse();
        assert_eq!(order(1, &shuffled), a, "the input order does not matter");
        assert_ne!(order(2, &agents), a, "another rollout, another order");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, agents, "the same agents, each once");
        // Pinned: SHA-256("1:ag-00") etc. must keep giving this order across builds.
        let first = order(1, &agents[..3]);
        let mut by_hash = agents[..3].to_vec();
        by_hash.sort_by_key(|x| Sha256::digest(format!("1:{x}").as_bytes()).to_vec());
        assert_eq!(first, by_hash);
    }

    fn progress<'a>(
        stages: &'a [u8],
        stage: usize,
        max: u8,
        states: &'a [Option<UpdateState>],
    ) -> Progress<'a> {
        Progress {
            stages,
            stage,
            max_failure_pct: max,
            states,
        }
    }

    #[test]
    fn a_stage_issues_then_waits_then_advances_then_finishes() {
        let stages = [50, 100];
        let none = [None; 4];
        assert_eq!(
            next_step(&progress(&stages, 0, 20, &none), false),
            Step::Issue(vec![0, 1])
        );
        let running = [Some(S::Committed), Some(S::Installed), None, None];
        assert_eq!(
            next_step(&progress(&stages, 0, 20, &running), false),
            Step::Wait
        );
        let first_done = [Some(S::Committed), Some(S::Committed), None, None];
        assert_eq!(
            next_step(&progress(&stages, 0, 20, &first_done), false),
            Step::Advance { next: 1 }
        );
        assert_eq!(
            next_step(&progress(&stages, 1, 20, &first_done), false),
            Step::Issue(vec![2, 3])
        );
        let all = [Some(S::Committed); 4];
        assert_eq!(
            next_step(&progress(&stages, 1, 20, &all), false),
            Step::Done
        );
    }

    #[test]
    fn a_stage_over_its_threshold_pauses_unless_the_failures_are_accepted() {
        let stages = [50, 100];
        let bad = [Some(S::Failed), Some(S::Committed), None, None];
        match next_step(&progress(&stages, 0, 20, &bad), false) {
            Step::Pause {
                failed,
                of,
                pct,
                reason,
            } => {
                assert_eq!((failed, of, pct), (1, 2, 50));
                assert!(reason.contains("1 of 2"), "{reason}");
                assert!(reason.contains("20%"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Exactly at the threshold is not above it.
        assert_eq!(
            next_step(&progress(&stages, 0, 50, &bad), false),
            Step::Advance { next: 1 }
        );
        assert_eq!(
            next_step(&progress(&stages, 0, 20, &bad), true),
            Step::Advance { next: 1 }
        );
        // Rolled back counts as a failure; a zero threshold pauses on the first one.
        let rolled = [Some(S::RolledBack), Some(S::Committed), None, None];
        assert!(matches!(
            next_step(&progress(&stages, 0, 0, &rolled), false),
            Step::Pause { .. }
        ));
    }

    #[test]
    fn a_later_stage_is_judged_on_the_agents_it_added() {
        let stages = [50, 100];
        // Stage 1's failure was accepted; stage 2's two agents committed.
        let states = [
            Some(S::Failed),
            Some(S::Committed),
            Some(S::Committed),
            Some(S::Committed),
        ];
        assert_eq!(
            next_step(&progress(&stages, 1, 20, &states), false),
            Step::Done
        );
        let states = [
            Some(S::Committed),
            Some(S::Committed),
            Some(S::Failed),
            Some(S::RolledBack),
        ];
        assert!(matches!(
            next_step(&progress(&stages, 1, 20, &states), false),
            Step::Pause {
                failed: 2,
                of: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_single_agent_rollout_is_one_stage_of_one() {
        let stages = [100];
        assert_eq!(
            next_step(&progress(&stages, 0, 20, &[None]), false),
            Step::Issue(vec![0])
        );
        assert_eq!(
            next_step(&progress(&stages, 0, 20, &[Some(S::Downloading)]), false),
            Step::Wait
        );
        assert_eq!(
            next_step(&progress(&stages, 0, 100, &[Some(S::Failed)]), false),
            Step::Done
        );
        assert!(matches!(
            next_step(&progress(&stages, 0, 20, &[Some(S::Failed)]), false),
            Step::Pause { .. }
        ));
    }
}
