import json

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


def test_bad_labels_are_listed_by_path_with_a_reason(tmp_path):
    dataset = load_dataset(
        write(
            tmp_path / "l.csv",
            "path,age,std\na.jpg,31,\nb.jpg,thirty,\nc.jpg,-3,\nd.jpg,121,\ne.jpg,,\nf.jpg,nan,\n"
            "g.jpg,40,wide\n,50,\nh.jpg,120,\ni.jpg,0,\nj.jpg,40,-1\n",
        )
    )
    assert [(s.path, s.age) for s in dataset.samples] == [
        (str(tmp_path / name), age) for name, age in [("a.jpg", 31), ("h.jpg", 120), ("i.jpg", 0)]
    ]
    assert dataset.bad_labels == {
        str(tmp_path / "b.jpg"): "age 'thirty' is neither a number nor a FairFace bin",
        str(tmp_path / "c.jpg"): "age -3 is negative",
        str(tmp_path / "d.jpg"): "age 121 is over 120",
        str(tmp_path / "e.jpg"): "no age",
        str(tmp_path / "f.jpg"): "age 'nan' is neither a number nor a FairFace bin",
        str(tmp_path / "g.jpg"): "age spread 'wide' is not a number >= 0",
        str(tmp_path / "j.jpg"): "age spread '-1' is not a number >= 0",
        f"{tmp_path / 'l.csv'} row 8": "no image path in column 'path'",
    }


ROWS = [
    {"file": "imgs/a.jpg", "age": 31, "box": [1, 2, 3, 4]},
    {"file": "imgs/b.jpg", "age": "7", "gender": "male", "box": [5, 6, 7, 8]},
    {"file": "imgs/c.jpg", "age": "thirty", "gender": "male"},
    {"file": "imgs/d.jpg", "age": -3},
    {"file": "imgs/e.jpg", "gender": "female"},
]


@pytest.mark.parametrize(
    "name, text",
    [
        ("list.json", json.dumps(ROWS)),
        ("object.json", json.dumps({"version": 2, "annotations": ROWS})),
        ("lines.jsonl", "\n".join(json.dumps(row) for row in ROWS) + "\n\n"),
        ("lines-named.json", "\n".join(json.dumps(row) for row in ROWS)),
        ("list.txt", "\n  " + json.dumps(ROWS, indent=1)),
    ],
)
def test_json_and_json_lines_label_files(tmp_path, name, text):
    dataset = load_dataset(write(tmp_path / name, text))
    assert [(s.path, s.age, s.groups) for s in dataset.samples] == [
        (str(tmp_path / "imgs/a.jpg"), 31.0, {}),
        (str(tmp_path / "imgs/b.jpg"), 7.0, {"gender": "male"}),
    ]
    assert dataset.bad_labels == {
        str(tmp_path / "imgs/c.jpg"): "age 'thirty' is neither a number nor a FairFace bin",
        str(tmp_path / "imgs/d.jpg"): "age -3 is negative",
        str(tmp_path / "imgs/e.jpg"): "no age",
    }


def test_json_that_is_not_a_list_of_images_is_explained(tmp_path):
    with pytest.raises(DatasetError, match="'train', 'test'.* hold 2 such lists"):
        load_dataset(write(tmp_path / "two.json", json.dumps({"train": ROWS, "test": ROWS})))
    with pytest.raises(DatasetError, match="expected a list of objects"):
        load_dataset(write(tmp_path / "numbers.json", "[1, 2, 3]"))
    with pytest.raises(DatasetError, match="bad.jsonl:2: not JSON"):
        load_dataset(write(tmp_path / "bad.jsonl", '{"path": "a.jpg", "age": 3}\n{"path": \n'))
    with pytest.raises(DatasetError, match="has no rows"):
        load_dataset(write(tmp_path / "empty.json", "[]"))


@pytest.mark.parametrize("name", ["labels.csv", "labels.json", "labels.jsonl", "one-object.json"])
def test_columns_can_be_named(tmp_path, name):
    rows = [{"picture": "a.jpg", "years": "31", "age": "ignored", "site": "x"}]
    text = {
        "labels.csv": "picture,years,age,site\na.jpg,31,ignored,x\n",
        "labels.json": json.dumps(rows),
        "labels.jsonl": json.dumps(rows[0]),
        "one-object.json": json.dumps(rows[0], indent=2),
    }[name]
    label_file = write(tmp_path / name, text)
    dataset = load_dataset(label_file, path_column="picture", age_column="years")
    assert [(s.path, s.age, s.groups) for s in dataset.samples] == [
        (str(tmp_path / "a.jpg"), 31.0, {"age": "ignored", "site": "x"})
    ]
    with pytest.raises(
        DatasetError,
        match=r"no column 'Years' \(--age-column\); its columns are \['picture', 'years', 'age', 'site'\]",
    ):
        load_dataset(label_file, path_column="picture", age_column="Years")
    with pytest.raises(DatasetError, match="no image path column.*Name it with --path-column"):
        load_dataset(label_file)


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
    assert dataset.bad_labels == {
        str(tmp_path / "notes.txt"): "name does not start with AGE_GENDER_RACE_ (UTKFace layout)"
    }
    with pytest.raises(DatasetError, match="apply to label files only"):
        load_dataset(tmp_path, age_column="age")


def test_unrecognised_layouts_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="expected UTKFace names AGE_GENDER_RACE_"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="has no age column: expected one of age, apparent_age_avg, mean"):
        load_dataset(write(tmp_path / "x.csv", "path,years\na.jpg,3\n"))
