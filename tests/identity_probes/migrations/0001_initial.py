from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list = []

    operations = [
        migrations.CreateModel(
            name="ProbeRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("function", models.CharField(max_length=100)),
                ("tag", models.CharField(db_index=True, max_length=100)),
                ("user_id", models.CharField(blank=True, max_length=100)),
            ],
            options={"permissions": [("run_probe", "Can run the permission probe")]},
        ),
    ]
