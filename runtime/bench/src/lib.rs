//! Dripline's benchmarks and its crash drill, outside the production binary:
//! [`steps`] (a step call through the sandbox against the step natively),
//! [`timers`] (the scheduler with a million timers pending), [`ingest`]
//! (signed webhooks over loopback through the gateway, against the same path
//! natively), [`crash`] (SIGKILL at random points, then compare) and
//! [`fuzz`] (mutated inputs through every parser of outside input) and
//! [`audience`] (importing, segments and time-driven entries at a million
//! contacts) and [`week`] (a week of the abandoned-checkout journey for a
//! million shoppers, every count checked). Each
//! prints its figures with a baseline measured in the same run; run them from
//! a release build with `./dev bench NAME`.

pub mod audience;
pub mod crash;
pub mod fuzz;
pub mod ingest;
pub mod steps;
pub mod timers;
pub mod week;
