//! `tephra update apply|rollback|status`: the appliance's A/B slots, as
//! tephra-image writes and reads them (image/README.md, docs/operators.md).

use std::path::Path;

use tephra_image::disk::BootDisk;

/// Writes `bundle` into the slot that is not running and makes it boot next,
/// for `tries` boots at most unless it comes up ready.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
pub fn apply(bundle: &Path, esp: &Path, tries: u32) -> Result<(), String> {
    let disk = BootDisk::discover().map_err(|e| e.to_string())?;
    let target = disk.update_target().map_err(|e| e.to_string())?;
    let running = tephra_image::disk::booted_roothash().map_err(|e| e.to_string())?;
    println!(
        "writing {} into slot {} ({})",
        bundle.display(),
        disk.running.other().letter(),
        target.root.device.display()
    );
    let applied = tephra_image::apply(bundle, &target, esp, &running, tries).map_err(|e| e.to_string())?;
    for retired in &applied.retired {
        println!("retired {retired}");
    }
    println!("installed {} (version {}, roothash {}): it boots next", applied.uki, applied.version, applied.roothash);
    Ok(())
}

/// Marks the running image bad, so that the other slot's boots next.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
pub fn rollback(esp: &Path) -> Result<(), String> {
    let (marked, next) =
        tephra_image::rollback(esp, &tephra_image::disk::booted_roothash().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    println!("marked {marked} bad; {next} boots at the next reboot");
    Ok(())
}

/// The running slot and version, and each installed image's boot state.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
pub fn status(esp: &Path) -> Result<(), String> {
    tephra_image::Status::read(esp).map(|status| print!("{status}")).map_err(|e| e.to_string())
}
