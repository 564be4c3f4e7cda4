//! The suite every backend runs (see `main.rs`).

use std::time::SystemTime;

use hestia_bucket::{BucketError, BucketIndex, PartialReason, TenantBucket};
use ulid::Ulid;

use crate::harness::{Backend, Fixture, LocalBlock};

/// Larger than the bucket's 8 MiB part size: uploaded in two parts.
const MULTIPART_SEGMENT: usize = (8 << 20) + 4321;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Every object name under the block's prefix, sorted.
async fn stored_files(bucket: &TenantBucket, block: &LocalBlock) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for rel in block
        .files
        .iter()
        .map(|(r, _)| r.as_str())
        .chain(["meta.json"])
    {
        match bucket.size(block.id(), rel).await {
            Ok(size) => out.push((rel.to_string(), size)),
            Err(BucketError::NotFound { .. }) => {}
            Err(e) => panic!("size of {rel}: {e}"),
        }
    }
    out.sort();
    out
}

pub async fn upload_then_read_meta_sizes_and_ranges(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let bucket = fx.bucket().tenant(&tenant);
    let block = fx.block_dir(&tenant, &[1000, MULTIPART_SEGMENT]);
    let before = now();
    let uploaded = bucket.upload_block(&block.dir).await.expect("upload");
    assert_eq!(uploaded, block.meta);
    assert_eq!(
        bucket.read_meta(block.id()).await.expect("meta"),
        block.meta
    );

    for (rel, bytes) in &block.files {
        let size = bucket.size(block.id(), rel).await.expect("size");
        assert_eq!(size, bytes.len() as u64, "{rel}");
    }
    let big = block.file("chunks/000002");
    let part = 8u64 << 20;
    for range in [
        0..1,
        17..4000,
        part - 10..part + 10,
        big.len() as u64 - 100..big.len() as u64,
    ] {
        let got = bucket
            .get_range(block.id(), "chunks/000002", range.clone())
            .await
            .expect("range");
        assert_eq!(
            got.as_ref(),
            &big[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    let index = bucket
        .get_range(block.id(), "index", 4990..5000)
        .await
        .expect("index range");
    assert_eq!(index.as_ref(), &block.file("index")[4990..5000]);
    assert!(matches!(
        bucket.get_range(block.id(), "no-such-file", 0..1).await,
        Err(BucketError::NotFound { .. })
    ));

    let (index, report) = BucketIndex::build(&bucket).await.expect("index");
    assert_eq!(report.partial_blocks, vec![]);
    let [b] = index.blocks.as_slice() else {
        panic!("one block expected: {index:?}");
    };
    assert_eq!(b.block_id, block.id());
    assert_eq!(
        (b.min_time, b.max_time),
        (block.meta.min_time, block.meta.max_time)
    );
    assert_eq!((b.segments_format.as_str(), b.segments_num), ("1b6d", 2));
    assert_eq!((b.source.as_str(), b.compaction_level), ("ingester", 1));
    // Clocks of the test and the store agree to a few seconds.
    assert!(
        (before - 5..=now() + 5).contains(&b.uploaded_at),
        "{}",
        b.uploaded_at
    );
}

pub async fn half_uploaded_block_is_invisible(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let bucket = fx.bucket().tenant(&tenant);
    let complete = fx.block_dir(&tenant, &[300]);
    bucket.upload_block(&complete.dir).await.expect("upload");

    // The upload of a block whose index cannot be read stops after its chunks.
    let half = fx.block_dir(&tenant, &[200, 300]);
    std::fs::remove_file(half.dir.join("index")).expect("remove index");
    match bucket.upload_block(&half.dir).await {
        Err(BucketError::Io { .. }) => {}
        other => panic!("upload without index: {other:?}"),
    }
    let stored = stored_files(&bucket, &half).await;
    assert_eq!(
        stored,
        vec![
            ("chunks/000001".to_string(), 200),
            ("chunks/000002".to_string(), 300)
        ]
    );
    assert!(matches!(
        bucket.read_meta(half.id()).await,
        Err(BucketError::NotFound { .. })
    ));

    let (index, report) = BucketIndex::build(&bucket).await.expect("index");
    let ids: Vec<Ulid> = index.blocks.iter().map(|b| b.block_id).collect();
    assert_eq!(ids, vec![complete.id()]);
    let [partial] = report.partial_blocks.as_slice() else {
        panic!("one partial block expected: {report:?}");
    };
    assert_eq!(
        (partial.id, &partial.reason),
        (half.id(), &PartialReason::MissingMeta)
    );
    assert!(partial.last_modified >= now() - 60);

    // Finishing the upload makes it complete.
    std::fs::write(half.dir.join("index"), half.file("index")).expect("index back");
    bucket.upload_block(&half.dir).await.expect("upload");
    let (index, report) = BucketIndex::update(&bucket, Some(&index))
        .await
        .expect("index");
    assert_eq!(index.blocks.len(), 2);
    assert!(report.partial_blocks.is_empty(), "{report:?}");
}

pub async fn reupload_is_idempotent(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let bucket = fx.bucket().tenant(&tenant);
    let block = fx.block_dir(&tenant, &[100, 200, 300]);
    bucket.upload_block(&block.dir).await.expect("upload");
    let first = stored_files(&bucket, &block).await;
    bucket.upload_block(&block.dir).await.expect("upload again");
    assert_eq!(stored_files(&bucket, &block).await, first);
    assert_eq!(first.len(), block.files.len() + 1);
    for (rel, bytes) in &block.files {
        let got = bucket
            .get_range(block.id(), rel, 0..bytes.len() as u64)
            .await
            .expect("read back");
        assert_eq!(got.as_ref(), bytes.as_slice(), "{rel}");
    }
    let (index, _) = BucketIndex::build(&bucket).await.expect("index");
    assert_eq!(index.blocks.len(), 1);
}

pub async fn upload_refuses_another_tenants_block(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let (a, b) = (fx.tenant("a"), fx.tenant("b"));
    let block = fx.block_dir(&a, &[10]);
    let wrong = fx.bucket().tenant(&b);
    match wrong.upload_block(&block.dir).await {
        Err(BucketError::InvalidBlock { reason, .. }) => assert!(reason.contains("tenant")),
        other => panic!("upload into another tenant: {other:?}"),
    }
    assert!(stored_files(&wrong, &block).await.is_empty());
}

pub async fn deletion_marks_and_deletion_show_in_the_index(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let bucket = fx.bucket().tenant(&tenant);
    let keep = fx.block_dir(&tenant, &[100]);
    let doomed = fx.block_dir(&tenant, &[100, 100]);
    bucket.upload_block(&keep.dir).await.expect("upload");
    bucket.upload_block(&doomed.dir).await.expect("upload");
    let (index, _) = BucketIndex::build(&bucket).await.expect("index");
    assert!(index.block_deletion_marks.is_empty());

    let mark = bucket.mark_for_deletion(doomed.id()).await.expect("mark");
    assert_eq!((mark.id, mark.version), (doomed.id(), 1));
    assert!((now() - 60..=now()).contains(&mark.deletion_time));
    // Marking again keeps the first mark.
    let again = bucket
        .mark_for_deletion(doomed.id())
        .await
        .expect("mark again");
    assert_eq!(again, mark);
    assert!(bucket.size(doomed.id(), "deletion-mark.json").await.is_ok());

    let (index, _) = BucketIndex::update(&bucket, Some(&index))
        .await
        .expect("index");
    assert_eq!(index.blocks.len(), 2, "a marked block stays until deleted");
    let m = index.deletion_mark(doomed.id()).expect("mark in index");
    assert_eq!(m.deletion_time, mark.deletion_time);
    assert!(index.deletion_mark(keep.id()).is_none());

    bucket.delete_block(doomed.id()).await.expect("delete");
    assert!(stored_files(&bucket, &doomed).await.is_empty());
    assert!(matches!(
        bucket.size(doomed.id(), "deletion-mark.json").await,
        Err(BucketError::NotFound { .. })
    ));
    bucket
        .delete_block(doomed.id())
        .await
        .expect("delete again");
    let (index, report) = BucketIndex::update(&bucket, Some(&index))
        .await
        .expect("index");
    let ids: Vec<Ulid> = index.blocks.iter().map(|b| b.block_id).collect();
    assert_eq!(ids, vec![keep.id()]);
    assert!(index.block_deletion_marks.is_empty());
    assert!(report.partial_blocks.is_empty(), "{report:?}");
    assert_eq!(bucket.read_meta(keep.id()).await.expect("kept"), keep.meta);
}

pub async fn index_update_reads_only_new_metas_and_marks(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let (bucket, counting) = fx.counted_bucket();
    let bucket = bucket.tenant(&tenant);
    assert_eq!(BucketIndex::read(&bucket).await.expect("read"), None);
    let a = fx.block_dir(&tenant, &[10]);
    let b = fx.block_dir(&tenant, &[10]);
    bucket.upload_block(&a.dir).await.expect("upload");
    bucket.upload_block(&b.dir).await.expect("upload");

    let (index, _) = BucketIndex::build(&bucket).await.expect("build");
    assert_eq!(counting.gets_ending_with("meta.json").len(), 2);
    index.write(&bucket).await.expect("write");
    let stored = BucketIndex::read(&bucket)
        .await
        .expect("read")
        .expect("index");
    assert_eq!(stored, index);

    let c = fx.block_dir(&tenant, &[10]);
    bucket.upload_block(&c.dir).await.expect("upload");
    let (index, _) = BucketIndex::update(&bucket, Some(&stored))
        .await
        .expect("update");
    let metas = counting.gets_ending_with("meta.json");
    assert_eq!(metas.len(), 3, "{metas:?}");
    assert!(metas[2].ends_with(&format!("{}/meta.json", c.id())));
    let mut ids: Vec<Ulid> = index.blocks.iter().map(|b| b.block_id).collect();
    ids.sort();
    let mut want = vec![a.id(), b.id(), c.id()];
    want.sort();
    assert_eq!(ids, want);

    bucket.mark_for_deletion(a.id()).await.expect("mark");
    let (index, _) = BucketIndex::update(&bucket, Some(&index))
        .await
        .expect("update");
    let global_marks = counting.gets_ending_with(&format!("markers/{}-deletion-mark.json", a.id()));
    assert_eq!(global_marks.len(), 1);
    let gets = counting.gets_ending_with("");
    let (again, _) = BucketIndex::update(&bucket, Some(&index))
        .await
        .expect("update");
    assert_eq!(counting.gets_ending_with(""), gets, "nothing new: no GET");
    assert_eq!(again.blocks, index.blocks);
    assert_eq!(again.block_deletion_marks, index.block_deletion_marks);
}

pub async fn tenants_are_isolated_even_when_one_id_prefixes_another(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let (a, ab) = (fx.tenant("a"), fx.tenant("ab"));
    assert!(ab.as_str().starts_with(a.as_str()));
    let root = fx.bucket();
    let (bucket_a, bucket_ab) = (root.tenant(&a), root.tenant(&ab));
    let block_a = fx.block_dir(&a, &[10]);
    let block_ab = fx.block_dir(&ab, &[10]);
    bucket_a.upload_block(&block_a.dir).await.expect("upload");
    bucket_ab.upload_block(&block_ab.dir).await.expect("upload");
    bucket_ab
        .mark_for_deletion(block_ab.id())
        .await
        .expect("mark");

    let (index_a, report_a) = BucketIndex::build(&bucket_a).await.expect("index");
    let ids: Vec<Ulid> = index_a.blocks.iter().map(|b| b.block_id).collect();
    assert_eq!(ids, vec![block_a.id()]);
    assert!(index_a.block_deletion_marks.is_empty());
    assert!(report_a.partial_blocks.is_empty());
    let (index_ab, _) = BucketIndex::build(&bucket_ab).await.expect("index");
    let ids: Vec<Ulid> = index_ab.blocks.iter().map(|b| b.block_id).collect();
    assert_eq!(ids, vec![block_ab.id()]);
    assert!(index_ab.deletion_mark(block_ab.id()).is_some());

    assert!(matches!(
        bucket_a.read_meta(block_ab.id()).await,
        Err(BucketError::NotFound { .. })
    ));
    let tenants = root.tenants().await.expect("tenants");
    assert!(tenants.contains(&a) && tenants.contains(&ab), "{tenants:?}");
    // Deleting everything of tenant a leaves ab's block alone.
    bucket_a.delete_block(block_a.id()).await.expect("delete");
    assert_eq!(
        bucket_ab.read_meta(block_ab.id()).await.expect("meta"),
        block_ab.meta
    );
}

pub async fn download_writes_every_file_meta_last_and_skips_the_mark(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let bucket = fx.bucket().tenant(&tenant);
    let block = fx.block_dir(&tenant, &[100, 2000]);
    bucket.upload_block(&block.dir).await.expect("upload");
    bucket.mark_for_deletion(block.id()).await.expect("mark");
    let dest = fx
        .data_dir
        .path()
        .join("download")
        .join(block.id().to_string());
    let (meta, bytes) = bucket
        .download_block(block.id(), &dest)
        .await
        .expect("download");
    assert_eq!(meta, block.meta);
    let mut total = std::fs::metadata(dest.join("meta.json"))
        .expect("meta")
        .len();
    for (rel, content) in &block.files {
        assert_eq!(
            &std::fs::read(dest.join(rel)).expect("file"),
            content,
            "{rel}"
        );
        total += content.len() as u64;
    }
    assert_eq!(bytes, total);
    assert!(!dest.join("deletion-mark.json").exists());
    let (_, report) = BucketIndex::build(&bucket).await.expect("index");
    assert!(
        report.block_bytes[&block.id()] > total,
        "the mark is counted too"
    );
    assert!(matches!(
        bucket
            .download_block(Ulid::new(), &fx.data_dir.path().join("none"))
            .await,
        Err(BucketError::NotFound { .. })
    ));
}

pub async fn tenant_deletion_mark_is_written_once_and_removed(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = fx.tenant("a");
    let bucket = fx.bucket().tenant(&tenant);
    assert_eq!(bucket.tenant_deletion_mark().await.expect("read"), None);
    let block = fx.block_dir(&tenant, &[10]);
    bucket.upload_block(&block.dir).await.expect("upload");
    let mark = bucket.mark_tenant_deleted().await.expect("mark");
    assert!((now() - 60..=now()).contains(&mark.deletion_time));
    assert_eq!(mark.finished_time, None);
    assert_eq!(bucket.mark_tenant_deleted().await.expect("again"), mark);
    assert_eq!(
        bucket.tenant_deletion_mark().await.expect("read"),
        Some(mark)
    );
    // The index ignores the tenant mark among block marks.
    let (index, report) = BucketIndex::build(&bucket).await.expect("index");
    assert_eq!(index.blocks.len(), 1);
    assert!(index.block_deletion_marks.is_empty());
    assert!(report.corrupt_marks.is_empty(), "{report:?}");
    index.write(&bucket).await.expect("write");
    bucket.delete_index().await.expect("delete index");
    assert_eq!(BucketIndex::read(&bucket).await.expect("read"), None);
    bucket
        .delete_tenant_deletion_mark()
        .await
        .expect("delete mark");
    assert_eq!(bucket.tenant_deletion_mark().await.expect("read"), None);
}
