//! Everything that can go wrong while reading a dataset. Each message names the file, folder
//! or value at fault and says what to do about it.

use std::path::PathBuf;

use thiserror::Error;

/// The image file extensions that image folders are read with (compared case-insensitively).
/// `.jpe` and `.jfif` are JPEG under other names.
pub const IMAGE_EXTENSIONS: [&str; 10] = [
    "jpg", "jpeg", "jpe", "jfif", "png", "bmp", "gif", "tif", "tiff", "webp",
];

/// Image formats that cameras and phones write but selfsup cannot decode: such files are
/// counted and named (never silently ignored), with advice to convert them.
pub const UNREADABLE_IMAGE_EXTENSIONS: [&str; 10] = [
    "heic", "heif", "avif", "jxl", "dng", "cr2", "cr3", "nef", "arw", "raw",
];

/// An error while finding, reading or decoding a dataset.
#[derive(Debug, Error)]
pub enum DataError {
    #[error(
        "'{}' does not exist; check the path (or leave the data path out to use the built-in \
         synthetic dataset)",
        .path.display()
    )]
    NotFound { path: PathBuf },

    #[error(
        "'{}' is a file, but a folder was expected; pass the folder that holds the images \
         (extract archives such as .tar.gz or .zip first)",
        .path.display()
    )]
    NotADirectory { path: PathBuf },

    #[error("cannot read '{}': {cause}; check that it exists and is readable", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error(
        "no images found in '{}'{detail}; selfsup reads image files ({}) directly in the folder, \
         in one sub-folder per class, or in train/ and test/ (or val/) sub-folders; it also reads \
         MNIST-style IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) and \
         CIFAR-10/100 binary batches (data_batch_1.bin ... or train.bin)",
        .path.display(),
        IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
    )]
    NoImages { path: PathBuf, detail: String },

    #[error(
        "cannot decode image '{}': {reason}; fix or delete the file, or pass --skip-bad to skip \
         unreadable images",
        .path.display()
    )]
    BadImage { path: PathBuf, reason: String },

    #[error(
        "cannot {action} the image cache at '{}': {cause}; make that folder writable or free \
         space there, put the cache elsewhere with --cache DIR, or decode into memory with \
         --no-cache",
        .path.display()
    )]
    Cache {
        path: PathBuf,
        action: &'static str,
        cause: std::io::Error,
    },

    #[error(
        "'{}' has images directly inside it (e.g. '{image}') and also class sub-folders with \
         images (e.g. '{folder}/'); move the loose images into their class folder, or delete them",
        .path.display()
    )]
    MixedLayout {
        path: PathBuf,
        image: String,
        folder: String,
    },

    #[error(
        "the test split '{}' has class folder '{class}', which the training split does not have \
         (training classes: {known}); rename or remove that folder",
        .path.display()
    )]
    UnknownTestClass {
        path: PathBuf,
        class: String,
        known: String,
    },

    #[error(
        "the test split '{}' has no class sub-folders, so its images have no labels; put them \
         in one sub-folder per class (as in the training split) or remove the folder",
        .path.display()
    )]
    UnlabeledTest { path: PathBuf },

    #[error(
        "'{}' is missing, but '{}' is there; both are needed — download the missing file into \
         the same folder",
        .path.display(),
        .partner.display()
    )]
    MissingFile { path: PathBuf, partner: PathBuf },

    #[error(
        "'{}' does not start with the IDX {kind} magic number: found 0x{found:08x}, expected \
         0x{expected:08x}; the file is not an MNIST-style {kind} file, is damaged, or is still \
         compressed — download it again",
        .path.display()
    )]
    IdxMagic {
        path: PathBuf,
        kind: &'static str,
        found: u32,
        expected: u32,
    },

    #[error(
        "'{}' is {actual} bytes but its IDX header ({header}) says it should be {expected} \
         bytes; the file is truncated or damaged — download it again",
        .path.display()
    )]
    IdxLength {
        path: PathBuf,
        header: String,
        expected: u128,
        actual: usize,
    },

    #[error(
        "'{}' holds {n_images} images but '{}' holds {n_labels} labels; they must match — the \
         two files are from different datasets or one is damaged, download them again",
        .images.display(),
        .labels.display()
    )]
    IdxCountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },

    #[error(
        "cannot decompress '{}': {cause}; the .gz file is damaged — download it again",
        .path.display()
    )]
    Gzip {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error(
        "'{}' is {len} bytes, which is not a whole number of {record}-byte CIFAR records \
         ({label_bytes} label byte(s) + 3072 pixel bytes each); the file is truncated or not a \
         CIFAR binary batch (use the \"binary version\", not the python or matlab one) — download \
         it again",
        .path.display()
    )]
    CifarLength {
        path: PathBuf,
        len: usize,
        record: usize,
        label_bytes: usize,
    },

    #[error(
        "'{}' holds no images; the file is empty or damaged — download it again",
        .path.display()
    )]
    EmptyFile { path: PathBuf },

    #[error(
        "'{}': image {index} has label {label}, but there are only {num_classes} classes; the \
         file is damaged or does not match its class-name file — download it again",
        .path.display()
    )]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u32,
        num_classes: usize,
    },

    #[error(
        "the images of '{}' need {bytes} bytes of memory at {width}x{height} pixels, which \
         cannot be allocated; leave out --no-cache (the cache keeps images on disk), or use a \
         smaller --crop-size or --image-size, or a --limit",
        .path.display()
    )]
    TooLarge {
        path: PathBuf,
        bytes: u128,
        width: usize,
        height: usize,
    },

    #[error(
        "{count} image(s) of '{}' have no caption ({source_kind}): {examples}; give each image one \
         (a `file,caption` row of captions.csv, or a .txt of the same name beside it) or remove it",
        .path.display()
    )]
    ImagesWithoutCaption {
        path: PathBuf,
        source_kind: &'static str,
        count: usize,
        examples: String,
    },

    #[error(
        "{count} caption(s) in '{}' name no image of that folder: {examples}; fix the names (paths \
         relative to the folder of captions.csv, or a .txt beside its image with the image's name) or \
         remove those captions",
        .path.display()
    )]
    CaptionsWithoutImage {
        path: PathBuf,
        count: usize,
        examples: String,
    },

    #[error("'{}'{}: {reason}", .path.display(), match .line { 0 => String::new(), l => format!(" line {l}") })]
    BadCaptions {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error("invalid {name} {value}: {reason}")]
    InvalidOption {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
}
