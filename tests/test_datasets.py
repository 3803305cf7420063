import pytest

from clip_age.evaluation.datasets import DatasetError, load_dataset


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_csv_with_groups(tmp_path):
    csv_file = write(tmp_path / "labels.csv", "path,age,gender\nimgs/a.jpg,31,female\nimgs/b.jpg,7,male\n")
    dataset = load_dataset(csv_file)
    assert dataset.kind == "age"
    assert [(s.path, s.age, s.groups) for s in dataset.samples] == [
        (str(tmp_path / "imgs/a.jpg"), 31.0, {"gender": "female"}),
        (str(tmp_path / "imgs/b.jpg"), 7.0, {"gender": "male"}),
    ]


def test_fairface_csv_has_bin_labels(tmp_path):
    csv_file = write(
        tmp_path / "fairface_label_val.csv",
        "file,age,gender,race,service_test\nval/1.jpg,3-9,Male,East Asian,False\n"
        "val/2.jpg,more than 70,Female,White,True\n",
    )
    dataset = load_dataset(csv_file)
    assert dataset.kind == "bins"
    assert [s.age_bin for s in dataset.samples] == ["3-9", "more than 70"]
    assert dataset.samples[0].groups == {"gender": "Male", "race": "East Asian"}


def test_lap_2016_style_csv_has_sigma(tmp_path):
    csv_file = write(tmp_path / "gt.csv", "image,mean,stdv\n1.jpg,25.5,3.2\n")
    dataset = load_dataset(csv_file)
    assert dataset.kind == "apparent"
    assert (dataset.samples[0].age, dataset.samples[0].sigma) == (25.5, 3.2)


def test_unusable_labels_are_skipped_with_a_reason(tmp_path):
    dataset = load_dataset(write(tmp_path / "l.csv", "path,age\na.jpg,31\nb.jpg,unknown\n"))
    assert len(dataset.samples) == 1
    assert dataset.skipped == {
        str(tmp_path / "b.jpg"): "age 'unknown' is neither a number nor a FairFace bin"
    }


def test_appa_real_folder_uses_face_crops_and_categories(tmp_path):
    write(
        tmp_path / "gt_avg_test.csv",
        "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"
        "005613.jpg,38,20.1,4.5,24\n005614.jpg,40,61.0,6.0,58\n",
    )
    write(
        tmp_path / "allcategories_test.csv",
        "file,gender,race,makeup,time,happiness\n005613.jpg,female,caucasian,makeup,modernphoto,happy\n",
    )
    write(tmp_path / "test" / "005613.jpg_face.jpg", "")
    dataset = load_dataset(tmp_path)
    assert dataset.kind == "apparent"
    first, second = dataset.samples
    assert first.path == str(tmp_path / "test" / "005613.jpg_face.jpg")
    assert second.path == str(tmp_path / "test" / "005614.jpg")
    assert (first.age, first.sigma) == (20.1, 4.5)
    assert first.groups["gender"] == "female" and first.groups["race"] == "caucasian"
    assert "real_age" not in first.groups and "num_ratings" not in first.groups


def test_appa_real_needs_the_split(tmp_path):
    write(tmp_path / "gt_avg_train.csv", "file_name,apparent_age_avg,apparent_age_std\n")
    with pytest.raises(DatasetError, match="no gt_avg_test.csv; choose --split"):
        load_dataset(tmp_path)


def test_utkface_folder(tmp_path):
    for name in ["26_1_2_20170116174525125.jpg", "5_0_0_20170110224349455.jpg", "notes.txt"]:
        write(tmp_path / name, "")
    dataset = load_dataset(tmp_path)
    assert [(s.age, s.groups) for s in dataset.samples] == [
        (26.0, {"gender": "female", "race": "asian"}),
        (5.0, {"gender": "male", "race": "white"}),
    ]
    assert list(dataset.skipped) == [str(tmp_path / "notes.txt")]


def test_unrecognised_layouts_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="expected UTKFace names AGE_GENDER_RACE_"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="has no age column: expected one of age, apparent_age_avg, mean"):
        load_dataset(write(tmp_path / "x.csv", "path,years\na.jpg,3\n"))
