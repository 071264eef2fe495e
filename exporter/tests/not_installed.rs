//! A program whose global allocator is the system's, not allocmeter's:
//! the exporter refuses to start (it would serve zeros) and says how to
//! install allocmeter, instead of serving an empty page.

use allocmeter_exporter::{Exporter, StartError};

#[test]
fn the_exporter_refuses_to_start_and_says_how_to_install_allocmeter() {
    let err = Exporter::builder()
        .bind("127.0.0.1:0")
        .start()
        .expect_err("allocmeter is not the global allocator here");
    assert!(matches!(err, StartError::NotInstalled), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("allocmeter is not this program's global allocator"),
        "{message}"
    );
    assert!(message.contains("#[global_allocator]"), "{message}");
    assert!(
        message.contains("allocmeter::Instrumented::new(std::alloc::System)"),
        "{message}"
    );
}
