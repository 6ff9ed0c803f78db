//! The behaviour suite on the blocking runtime (see the crate docs for the cases).

pacerelle_runtime_suite::behaviour_suite!(pacerelle_runtime_suite::harness::Blocking);
