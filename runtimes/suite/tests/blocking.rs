//! The behaviour suite on the blocking runtime (see the crate docs for the cases and those still pending).

pacerelle_runtime_suite::behaviour_suite!(pacerelle_runtime_suite::harness::Blocking);
