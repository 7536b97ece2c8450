//! Small images (and impostors) for upload tests.

/// A real 1×1 PNG.
pub fn png() -> Vec<u8> {
    let hex = "89504e470d0a1a0a0000000d4948445200000001000000010806000000\
               1f15c4890000000d49444154789c6360000002000100e5273f990000000049454e44ae426082";
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A PNG header declaring `width` × `height` pixels (a "pixel flood" when large).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

/// A GIF header of 2×3 pixels.
pub fn gif() -> Vec<u8> {
    let mut bytes = b"GIF89a".to_vec();
    bytes.extend_from_slice(&[2, 0, 3, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0x3b]);
    bytes
}

/// A baseline JPEG header of 16×16 pixels.
pub fn jpeg() -> Vec<u8> {
    vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03, 0x01, 0x11, 0x00,
        0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9,
    ]
}

/// A lossless WebP header of 4×5 pixels.
pub fn webp() -> Vec<u8> {
    let mut chunk = vec![0x2F];
    let bits: u32 = 3 | (4 << 14); // width-1 = 3, height-1 = 4
    chunk.extend_from_slice(&bits.to_le_bytes());
    chunk.extend_from_slice(&[0; 8]);
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(4 + 8 + chunk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WEBPVP8L");
    bytes.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&chunk);
    bytes
}

/// An SVG with a script: what a stored-XSS attempt looks like.
pub fn svg() -> Vec<u8> {
    b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(2)</script></svg>"
        .to_vec()
}
