//! The archive reader on arbitrary bytes: sniff the outer compression, decode, read the tar, work
//! out the images (what `layerlift-unpack --list` does, without a layout). Whatever the bytes, the
//! reader must return an error or a description, never panic, and stay within memory.

#![no_main]

use layerlift_archive::{analyze, scan_tar, select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((compression, mut decoded)) = layerlift_layers::decoder(data) else {
        return;
    };
    let Ok(scan) = scan_tar(&mut decoded, None, None) else {
        return;
    };
    if let Ok(info) = analyze(&scan, compression) {
        let all = select(&info, &[]).expect("selecting every image cannot fail");
        assert_eq!(all.len(), info.images.len());
        for image in &info.images {
            let _ = layerlift_archive::label(image);
        }
    }
});
